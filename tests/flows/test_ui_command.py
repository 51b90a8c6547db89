"""`pst ui` starts the Prefect server and the MLflow UI on 127.0.0.1 and stops both when it is
stopped (Ctrl-C or SIGTERM)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, http_ok, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_pst_ui_serves_both_uis_on_loopback(tmp_path):
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "ui.log"
    ui = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ui", "--output-dir", str(tmp_path / "runs"),
         "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{prefect_port}/api/health"), 120, "Prefect")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{mlflow_port}/health"), 120, "MLflow")
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=90)
    output = log.read_text()
    assert f"Prefect UI: http://127.0.0.1:{prefect_port}" in output
    assert f"MLflow UI:  http://127.0.0.1:{mlflow_port}" in output
    assert ui.returncode == 0
    for port in (prefect_port, mlflow_port):  # both servers, workers included, are gone
        with pytest.raises(OSError):
            http_ok(f"http://127.0.0.1:{port}/")
