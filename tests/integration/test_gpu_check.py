"""bench/gpu_check.py on the CPU with small shapes: the whole pipeline (two rounds of PST on three
tiny peers) and the speed table, as a GPU machine runs it with --device cuda."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_cpu_small(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--small",
                           "--vllm", "off", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["pipeline"]["ok"] and figures["pipeline"]["devices"] == ["cpu"] * 3
    speed = figures["speed"]
    assert speed["matmul TFLOP/s (measured)"] > 0
    for stage in ("transformers generate", "transformers score"):
        assert speed[stage]["tokens"] > 0 and speed[stage]["tokens/s"] > 0
    assert "| transformers generate" in done.stdout
