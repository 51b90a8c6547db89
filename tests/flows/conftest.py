"""Prefect fixtures: one test harness for the session (8-12 s to start on 2 cores), and a real
`prefect server` for the deployment and UI tests."""

import os
import subprocess

import pytest

from flows.servers import executable
from tests.helpers import free_port, http_ok, stop, wait_for


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture()
def prefect_server(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([executable("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for(lambda: http_ok(f"{api}/health"), 90, "the Prefect server")
        yield api, env
    finally:
        stop(server)
