"""`pst ui` starts the Prefect server and the MLflow UI on 127.0.0.1 and stops both when it is
stopped (Ctrl-C or SIGTERM)."""

import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import free_port, http_ok, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_pst_ui_serves_both_uis_on_loopback(tmp_path):
    """Run as a virtual environment's pst is when it is not activated: its bin/ off PATH."""
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PATH": "/usr/bin:/bin"}
    env.pop("PREFECT_API_URL", None)
    env.pop("VIRTUAL_ENV", None)
    log = tmp_path / "ui.log"
    ui = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ui", "--output-dir", str(tmp_path / "runs"),
         "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{prefect_port}/api/health"), 120, "Prefect")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{mlflow_port}/health"), 120, "MLflow")
        from flows.servers import is_prefect_server

        assert is_prefect_server(f"http://127.0.0.1:{prefect_port}")  # what pst run then uses
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


class _AnythingGoes(BaseHTTPRequestHandler):
    """Another program on a port: it answers every request with 200."""

    def do_GET(self):  # http.server's name for the GET handler
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


def test_a_port_taken_by_another_program_is_one_line_and_not_taken_for_prefect(tmp_path):
    from flows.servers import is_prefect_server

    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnythingGoes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert http_ok(f"http://127.0.0.1:{port}/api/health")  # it even "passes" a health check
        assert not is_prefect_server(f"http://127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "ui", "--output-dir", str(tmp_path / "runs"),
             "--prefect-port", str(port), "--mlflow-port", str(free_port())],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")})
    finally:
        server.shutdown()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"port {port} on 127.0.0.1 is in use by another program" in error
    assert "--prefect-port" in error
