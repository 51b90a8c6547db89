"""`pst run` killed with SIGKILL while generating, training and evaluating, then run again:
the same tables as an uninterrupted run, and no temporary file left in the run directory.

A SIGKILL runs no ``finally``: the killed write's temporary (``.<name>.<random>.tmp``, or a
checkpoint's ``checkpoints/.<peer>.<random>/``) stays behind, and the next ``pst run`` must
remove it (``Runner.setup``). To kill at a chosen point every time, the process kills itself:
``_KILLER`` wraps ``os.replace``/``os.rename`` (which put a finished temporary in place) and
sends SIGKILL to its own process just before a matching rename, so the temporary is on disk.
Polling for files from outside would miss the few milliseconds a temporary of a tiny run exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pst_core.config import parse_config
from pst_core.runner import Runner
from tests.helpers import tiny_config, training_outputs, write_pool

ROOT = Path(__file__).resolve().parents[2]

_KILLER = """
import fnmatch, os, signal, sys
pattern = sys.argv[1]
real_replace, real_rename = os.replace, os.rename

def _kill_before(dst):
    if fnmatch.fnmatch(os.fspath(dst), pattern):
        os.kill(os.getpid(), signal.SIGKILL)

def replace(src, dst, **kwargs):
    _kill_before(dst)
    return real_replace(src, dst, **kwargs)

def rename(src, dst, **kwargs):
    _kill_before(dst)
    return real_rename(src, dst, **kwargs)

os.replace, os.rename = replace, rename
from flows.cli import main
sys.exit(main(sys.argv[2:]))
"""

# Like _KILLER, but waits instead: announces itself in a file, then holds the run for a minute.
_PAUSER = _KILLER.replace(
    "os.kill(os.getpid(), signal.SIGKILL)",
    "open(os.environ['PST_PAUSED'], 'w').close(); __import__('time').sleep(60)")

# (what is running, the rename it is killed before, the temporary that must be left)
KILLS = [
    ("generation", "*/round_1/parts/turn1_*", "round_1/parts/.turn1_*.tmp"),
    ("training", "*/round_1/checkpoints/qwen", "round_1/checkpoints/.qwen.*"),
    ("evaluation", "*/round_1/parts/eval_qwen@*", "round_1/parts/.eval_qwen@*.tmp"),
]


def _pst_run(config: Path, kill_before: str | None) -> subprocess.CompletedProcess:
    args = ["run", str(config), "--no-prefect", "--no-track"]
    command = ([sys.executable, "-c", _KILLER, kill_before, *args] if kill_before
               else [sys.executable, "-m", "flows.cli", *args])
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)


def _tables(layout) -> dict:
    out = training_outputs(layout, rounds=1)
    for r in (0, 1):
        out[(r, "eval")] = pq.read_table(layout.eval(r)).to_pylist()
        out[(r, "metrics")] = [m for m in pq.read_table(layout.metrics(r)).to_pylist()
                               if not m["name"].startswith(("wall_s/", "rss_gb/"))]
    return out


def _temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name != ".lock")


def test_killed_run_resumes_to_the_same_tables_and_leaves_no_temporaries(tmp_path,
                                                                         tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    reference = Runner(parse_config(tiny_config(tmp_path / "reference", tiny_model_dirs, pool,
                                                rounds=1))).run()
    raw = tiny_config(tmp_path / "killed", tiny_model_dirs, pool, rounds=1)
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(raw))
    root = Runner(parse_config(raw)).layout.root

    for stage, kill_before, left in KILLS:
        result = _pst_run(config, kill_before)
        assert result.returncode == -signal.SIGKILL, (stage, result.stderr[-3000:])
        assert [p.relative_to(root) for p in root.glob(left)], (stage, _temporaries(root))
        # what the earlier kills left was removed when this run started
        assert all(Path(p).match(left) for p in _temporaries(root)), (stage, _temporaries(root))

    result = _pst_run(config, None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(left by a killed run)" in result.stderr
    assert _temporaries(root) == []
    assert _tables(Runner(parse_config(raw)).layout) == _tables(reference)


def test_a_second_process_on_a_running_run_refuses_and_the_first_resumes(tmp_path,
                                                                         tiny_model_dirs):
    import time

    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    raw = tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1, learners=["qwen"])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    root = Runner(parse_config(raw)).layout.root
    paused = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PST_PAUSED": str(paused)}
    first = subprocess.Popen(
        [sys.executable, "-c", _PAUSER, "*/round_1/parts/turn1_*", "run", str(config),
         "--no-prefect", "--no-track"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended"
            time.sleep(0.5)
        files = sorted(root.rglob("*"))
        second = _pst_run(config, None)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        [error] = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert f"process {first.pid} is running this run already" in error
        assert sorted(root.rglob("*")) == files  # the refused run wrote nothing
    finally:
        first.kill()
        first.wait()
    again = _pst_run(config, None)  # the kernel released the killed process's lock
    assert again.returncode == 0, again.stderr[-3000:]
