"""Browser test: headless Chromium (Debian's package) loads the Prefect UI page of a completed
flow run and the MLflow page of its run; the rendered DOM must name the run, and screenshots
are taken (set PST_SCREENSHOT_DIR to keep them, e.g. docs/img for the README)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.servers import executable
from tests.helpers import api_call, free_port, http_ok, stop, tiny_config, wait_for, write_pool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def chromium(url: str, tmp: Path, *, screenshot: Path | None = None) -> str:
    """Render ``url`` headless; return the DOM after 20 s of virtual time (and save a PNG)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp / 'chrome-profile'}",
            "--window-size=1400,900", "--virtual-time-budget=20000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    return done.stdout


def test_prefect_and_mlflow_pages_of_a_completed_run(tmp_path, tiny_model_dirs, prefect_server):
    api, env = prefect_server
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1)))
    run = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    flow_runs = api_call(api, "/flow_runs/filter", {"flows": {"name": {"any_": ["pst-pipeline"]}}})
    assert [r["state_type"] for r in flow_runs] == ["COMPLETED"]
    prefect_url = api.removesuffix("/api") + f"/runs/flow-run/{flow_runs[0]['id']}"

    mlflow_port = free_port()
    db = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    mlflow = subprocess.Popen(
        [executable("mlflow"), "server", "--backend-store-uri", db, "--host", "127.0.0.1", "--port",
         str(mlflow_port), "--workers", "1"],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(tmp_path / "mlflow.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        mlflow_base = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: http_ok(f"{mlflow_base}/health"), 90, "the MLflow server")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(db)
        experiment = client.get_experiment_by_name("tiny")
        parent = client.search_runs([experiment.experiment_id],
                                    filter_string="tags.`pst.kind` = 'pipeline'")[0]
        mlflow_url = (f"{mlflow_base}/#/experiments/{experiment.experiment_id}"
                      f"/runs/{parent.info.run_id}")
        assert flow_runs[0]["name"] in chromium(prefect_url, tmp_path)
        assert parent.info.run_name in chromium(mlflow_url, tmp_path)
        shots = Path(os.environ.get("PST_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        for name, url in (("prefect-flow-run.png", prefect_url), ("mlflow-run.png", mlflow_url)):
            chromium(url, tmp_path, screenshot=shots / name)
            assert (shots / name).stat().st_size > 20_000  # a rendered page, not a blank one
    finally:
        stop(mlflow)
