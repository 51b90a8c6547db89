"""The deployments/prefect.yaml path for real: against a `prefect server`, a process work pool,
`prefect deploy` of the pipeline from the yaml (PST_PROJECT_DIR at this checkout), a worker, and
a run with a parameter override that completes. Docker and Kubernetes pools differ only in the
pool's type and the yaml's work_pool section (docs/usage.md "Prefect and MLflow")."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import api_call, stop, tiny_config, write_pool

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect", "--no-prompt"]


def _prefect(args, env, cwd, timeout=120) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_yaml_deployment_runs_on_a_process_worker_with_an_override(tmp_path, tiny_model_dirs,
                                                                 prefect_server):
    api, env = prefect_server
    env = {**env, "PST_PROJECT_DIR": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])}
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=0)))

    _prefect(["work-pool", "create", "pst-process", "--type", "process"], env, tmp_path)
    _prefect(["deploy", "--prefect-file", str(ROOT / "deployments" / "prefect.yaml"),
              "--name", "pst-pipeline"], env, ROOT)
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([*PREFECT, "worker", "start", "--pool", "pst-process"], env=env,
                              cwd=tmp_path, stdout=worker_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        _prefect(["deployment", "run", "pst-pipeline/pst-pipeline",
                  "--param", f"config_path={config}", "--param", 'overrides=["seed=1"]',
                  "--watch", "--watch-timeout", "150"], env, tmp_path, timeout=180)
    finally:
        stop(worker)
    runs = api_call(api, "/flow_runs/filter", {"deployments": {"name": {"any_": ["pst-pipeline"]}}})
    assert [r["state_type"] for r in runs] == ["COMPLETED"], (tmp_path / "worker.log").read_text()[-3000:]
    assert runs[0]["parameters"]["overrides"] == ["seed=1"]
    seeds = [yaml.safe_load(p.read_text())["seed"]
             for p in (tmp_path / "runs" / "tiny").glob("*/config.yaml")]
    assert seeds == [1]
