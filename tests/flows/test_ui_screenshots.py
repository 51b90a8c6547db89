"""Browser test: headless Chromium (Debian's package) opens the links `pst run` prints after a
completed flow run (Prefect flow run and round table, MLflow curves, rounds side by side, the
experiment's charts); each rendered page must show what the link promises, and screenshots are
taken (set PST_SCREENSHOT_DIR to keep them, e.g. docs/img for the README)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.servers import MLFLOW_URL, executable
from tests.helpers import api_call, free_port, http_ok, stop, tiny_config, wait_for, write_pool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def chromium(url: str, tmp: Path, *, screenshot: Path | None = None) -> str:
    """Render ``url`` headless; return the DOM after 40 s of virtual time (and save a PNG)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp / 'chrome-profile'}",
            "--window-size=1400,900", "--virtual-time-budget=40000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    return done.stdout


def test_the_links_pst_run_prints_open_pages_that_show_em(tmp_path, tiny_model_dirs,
                                                          prefect_server):
    """`pst run` ends with links to the UIs; each opens a page that shows what it promises (the
    flow run, the round's table, EM per round in MLflow's model-training view)."""
    api, env = prefect_server
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1)))
    run = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    links = dict(re.findall(r"^  ([a-zA-Z0-9 ,]+?):\s+(http\S+)$", run.stdout, re.MULTILINE))
    flow_runs = api_call(api, "/flow_runs/filter", {"flows": {"name": {"any_": ["pst-pipeline"]}}})
    assert [r["state_type"] for r in flow_runs] == ["COMPLETED"]
    prefect_ui = api.removesuffix("/api")
    assert links["Prefect flow run"] == f"{prefect_ui}/runs/flow-run/{flow_runs[0]['id']}"
    assert "pst serve" in run.stdout

    mlflow_port = free_port()
    db = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    mlflow = subprocess.Popen(
        [executable("mlflow"), "server", "--backend-store-uri", db, "--host", "127.0.0.1", "--port",
         str(mlflow_port), "--workers", "1"],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(tmp_path / "mlflow.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        mlflow_ui = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: http_ok(f"{mlflow_ui}/health"), 90, "the MLflow server")
        shots = Path(os.environ.get("PST_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        pages = {  # screenshot -> (link printed by `pst run`, text the page must show)
            "prefect-flow-run.png": (links["Prefect flow run"], flow_runs[0]["name"]),
            "prefect-round-table.png": (links["round 1 table"], "EM (%)"),
            "mlflow-run-curves.png": (links["MLflow curves"], "em/llama"),
            "mlflow-rounds.png": (links["rounds side by side"], "em/llama/synthetic-eval"),
            "mlflow-charts.png": (links["all runs, charts"], "em/llama"),
        }
        for name, (url, text) in pages.items():
            url = url.replace(MLFLOW_URL, mlflow_ui)  # the printed links name `pst ui`'s port
            chromium(url, tmp_path, screenshot=shots / name)
            assert (shots / name).stat().st_size > 20_000  # a rendered page, not a blank one
            assert text in chromium(url, tmp_path), f"{name}: {url} does not show {text!r}"
    finally:
        stop(mlflow)
