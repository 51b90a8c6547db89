"""vLLM's requirements read from the registry now (opt-in: PST_NETWORK_TESTS=1, needs PyPI):
pyproject.toml must leave room for them, and data/vllm_requirements.json must still say what the
wheels say (the unit tier checks pyproject against that record without network).

The METADATA comes from ``pip install --dry-run --no-deps --report`` (PyPI serves it apart
from the wheel, PEP 658), not ``pip download``: the CUDA wheel of vLLM is several hundred MB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_pins import RECORDED, conflicts, project_requirements

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.environ.get("PST_NETWORK_TESTS") != "1",
                                reason="reads PyPI: set PST_NETWORK_TESTS=1")


def wheel_requirements(spec: str, tmp_path) -> list[str]:
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                    "--ignore-installed", "--quiet", "--report", str(report), spec],
                   check=True, capture_output=True, timeout=300)
    metadata = json.loads(report.read_text())["install"][0]["metadata"]
    return [r for r in metadata.get("requires_dist", []) if "extra ==" not in r]


@pytest.mark.parametrize("spec", sorted(json.loads(RECORDED.read_text())["packages"]))
def test_vllm_metadata_fits_our_pins_and_the_record(spec, tmp_path):
    fetched = wheel_requirements(spec, tmp_path)
    base, _ = project_requirements()
    assert conflicts(base, fetched) == []
    recorded = json.loads(RECORDED.read_text())["packages"][spec]
    assert sorted(fetched) == sorted(recorded), "re-record data/vllm_requirements.json"


def test_the_gpu_user_environment_resolves(tmp_path):
    """`pip install -e ".[gpu,flows]"` (vLLM, Prefect, MLflow in one environment) resolves
    against the registry now; only metadata is read where the registry serves it (PEP 658)."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                           "--ignore-installed", "--quiet", "--report", str(report),
                           f"{ROOT}[gpu,flows]"], capture_output=True, text=True, timeout=1800,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    chosen = {p["metadata"]["name"].lower(): p["metadata"]["version"]
              for p in json.loads(report.read_text())["install"]}
    assert chosen["vllm"] and chosen["prefect"].startswith("3.7.")
    assert chosen["fastapi"].startswith("0.136.") and chosen["mlflow"]
