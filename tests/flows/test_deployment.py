"""A served deployment against a real Prefect server: its schedule fires, and a run triggered
like the UI's Run button (``prefect deployment run``) with a parameter override completes and
appears in MLflow as a new run."""

import subprocess
import sys
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from flows.servers import executable
from tests.helpers import api_call, stop, tiny_config, wait_for, write_pool

ROOT = Path(__file__).resolve().parents[2]


def test_schedule_fires_and_ui_style_run_with_override_completes(tmp_path, tiny_model_dirs,
                                                                  prefect_server):
    api, env = prefect_server
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=0)))
    serve_log = open(tmp_path / "serve.log", "w")
    served = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--config", str(config), "--interval", "20",
         "--name", "test"], env=env, cwd=ROOT, stdout=serve_log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        wait_for(lambda: api_call(api, "/deployments/filter", {"deployments": {"name": {"any_": ["test"]}}}),
              90, "the deployment to be registered")
        triggered = subprocess.run(
            [executable("prefect"), "deployment", "run", "pst-pipeline/test", "--param",
             'overrides=["seed=1"]', "--watch", "--watch-timeout", "300"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=360)
        assert triggered.returncode == 0, triggered.stdout[-2000:] + triggered.stderr[-2000:]

        def completed_runs():
            runs = api_call(api, "/flow_runs/filter", {
                "deployments": {"name": {"any_": ["test"]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
            manual = [r for r in runs if not r["auto_scheduled"]]
            scheduled = [r for r in runs if r["auto_scheduled"]]
            return (manual, scheduled) if manual and scheduled else None

        manual, scheduled = wait_for(completed_runs, 240, "a scheduled run to complete")
    finally:
        stop(served)
    assert manual[0]["parameters"]["overrides"] == ["seed=1"]
    client = MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              filter_string="tags.`pst.kind` = 'pipeline'")
    params = sorted(r.data.params["seed"] for r in runs)
    assert params == ["0", "1"]  # the scheduled run (config) and the override: two MLflow runs
