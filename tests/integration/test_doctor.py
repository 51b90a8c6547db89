"""`pst doctor` on this CPU: versions and their requirements, the device, a config's peers sized
from their configs, and two rounds of PST on tiny peers, each with a verdict."""

import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import tiny_config, write_pool

ROOT = Path(__file__).resolve().parents[2]


def test_doctor_gives_a_verdict_per_item_and_runs_the_tiny_pipeline(tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool)))
    done = subprocess.run([sys.executable, "-m", "flows.cli", "doctor", str(config),
                           "--device", "cpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("     versions: torch ") for line in lines)
    assert "ok   requirements: every installed package's requirements" in done.stdout
    assert any(line.startswith("     bf16: ") and "dtype auto picks" in line for line in lines)
    assert any(line.startswith("     on a GPU: with --device cuda this checks") for line in lines)
    [qwen] = [line for line in lines if line.startswith("ok   peer qwen:")]
    assert "parameters:" in qwen and "rows fit in" in qwen
    [pipeline] = [line for line in lines if "pipeline: two rounds on cpu, cpu, cpu" in line]
    assert pipeline.startswith("ok   ") and "adapters (rounds 1-2)" in pipeline
