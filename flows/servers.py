"""The local servers behind `pst ui`: the Prefect server and the MLflow UI, each in its own
process group so that stopping it stops its workers too; and the environment that makes flow
runs report to that Prefect server when it is up.

Only the standard library at import time: `pst` imports this module for every command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT_URL = "http://127.0.0.1:4200"
MLFLOW_URL = "http://127.0.0.1:5000"


def prefect_env() -> None:
    """Offline settings, a project-local Prefect home, and the `pst ui` server if it is up.

    With `pst ui` running, flow runs go to its server (and show in its UI as they happen);
    otherwise Prefect runs an ephemeral server on the same database (PREFECT_HOME). Variables
    the user set are kept.
    """
    import importlib.util

    from pst_core.errors import PSTError
    from pst_core.tracking import apply_offline_env

    if importlib.util.find_spec("prefect") is None:
        raise PSTError(
            "Prefect is not installed (it is the `flows` extra: pip install -e '.[flows]'); run "
            "the plain loop with `pst run --no-prefect`.")
    apply_offline_env()
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pst_core")
    if "PREFECT_API_URL" not in os.environ and is_prefect_server(PREFECT_URL):
        os.environ["PREFECT_API_URL"] = f"{PREFECT_URL}/api"


def is_prefect_server(url: str) -> bool:
    """Whether a Prefect server answers at ``url``: its version endpoint gives a version
    string (another program on the port may answer anything, and Prefect's client would then
    fail with a traceback)."""
    import json

    try:
        with urllib.request.urlopen(f"{url}/api/admin/version", timeout=3) as response:
            version = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return isinstance(version, str) and version[:1].isdigit()


def executable(name: str) -> str:
    """A console script of this environment: beside the running interpreter (a virtual
    environment's bin/, found whether or not it is activated), else on PATH."""
    import shutil

    from pst_core.errors import PSTError

    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise PSTError(f"`{name}` is not installed beside {sys.executable} nor on PATH: install "
                       "the flows extra (pip install -e '.[flows]')")
    return found


def check_port_free(host: str, port: int, option: str) -> None:
    """Refuse a port another program listens on, naming the option that moves ours."""
    import socket

    from pst_core.errors import PSTError

    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            raise PSTError(f"port {port} on {host} is in use by another program; stop it, or "
                           f"choose another port with {option}")


def start_ui(
    output_dir: str | Path, *, host: str = "127.0.0.1", prefect_port: int = 4200,
    mlflow_port: int = 5000,
) -> list[subprocess.Popen]:
    """Start ``prefect server start`` and ``mlflow server`` (one worker, no job execution: about
    10 s and 530 MB) on the runs directory's ``mlflow.db`` and ``mlartifacts``.

    Returns the two processes, each the leader of a new process group (see ``stop_group``).
    """
    from pst_core.tracking import default_tracking_uri

    prefect_env()
    check_port_free(host, prefect_port, "--prefect-port")
    check_port_free(host, mlflow_port, "--mlflow-port")
    os.environ.pop("PREFECT_API_URL", None)  # the server we start is the API
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    artifacts = (Path(output_dir).resolve() / "mlartifacts").as_uri()
    commands = [
        [executable("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
        [executable("mlflow"), "server", "--backend-store-uri", default_tracking_uri(output_dir),
         "--default-artifact-root", artifacts, "--host", host, "--port", str(mlflow_port),
         "--workers", "1"],
    ]
    return [subprocess.Popen(c, env=env, start_new_session=True) for c in commands]


def wait_for_exit(processes: list[subprocess.Popen]) -> None:
    """Block until one of the processes exits, or Ctrl-C, or SIGTERM (handled like Ctrl-C, even
    when the caller was started with SIGINT ignored)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass


def stop_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session=True``);
    SIGKILL what is left after ``grace_s`` seconds. A group already gone is fine."""
    for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def exit_promptly_on_interrupt() -> None:
    """Make Ctrl-C (or SIGTERM) end this process at once, and its descendants with it.

    A terminal's Ctrl-C reaches the whole process group, Prefect's temporary API server
    included, which dies at once; Prefect's client in this process then retried the dead server
    for minutes. A KeyboardInterrupt raised instead lands wherever Python is (in a finalizer,
    it is ignored). Every table and checkpoint is written atomically and a killed run resumes
    (tested with SIGKILL), so the handler says how to resume, stops the descendants (the
    temporary server, Dask workers) and exits with 130. The Prefect UI may show that flow run
    as running; the rerun is a new flow run.
    """

    def interrupted(signum, frame) -> None:
        print("interrupted: run the same command again to resume (finished steps are kept)",
              file=sys.stderr, flush=True)
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)


def _descendants(root: int) -> list[int]:
    """The processes below ``root`` (from /proc; none where there is no /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
