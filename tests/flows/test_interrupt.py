"""Ctrl-C of `pst run` under Prefect: a terminal's Ctrl-C signals the whole process group,
Prefect's temporary API server with it; the run must end within seconds, leave no process
behind, and the same command must then resume and finish it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.helpers import tiny_config, write_pool

ROOT = Path(__file__).resolve().parents[2]


def _descendants_alive(pids: list[int]) -> list[str]:
    """The command lines of those still running (a zombie waiting for init counts as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return alive


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True,
                         check=False)
    return [int(x) for x in out.stdout.split()]


def test_ctrl_c_ends_a_prefect_run_at_once_and_the_rerun_resumes(tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1,
                                                 learners=["qwen"])))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, as a user's first run has
    command = [sys.executable, "-m", "flows.cli", "run", str(config), "--no-track"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        # SIGINT as a terminal leaves it (a shell's background job would have it ignored)
        default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=default_sigint)  # noqa: PLW1509
    deadline = time.monotonic() + 300
    while "round 1: generate" not in log.read_text():  # mid-round, the server up
        assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    children = _children_of(run.pid)
    assert children, "no temporary Prefect server found"
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    start = time.monotonic()
    run.wait(timeout=30)
    assert time.monotonic() - start < 10 and run.returncode == 130
    assert "run the same command again to resume" in log.read_text()
    deadline = time.monotonic() + 10
    while _descendants_alive(children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _descendants_alive(children) == []
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=False, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "results:" in again.stdout
