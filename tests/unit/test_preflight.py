"""The pre-flight judges a learner by its solo answers, not by the answers it copied in the chain."""

import pyarrow as pa

from pst_core.preflight import Preflight, _solo
from pst_core.reliability import answer_posteriors, estimate_reliability
from pst_core.schemas import RESPONSES_SCHEMA
from tests.unit.test_reliability import dataset, responses_table


def solo_table(learner: str, answers: dict[str, str | None]) -> pa.Table:
    return pa.Table.from_pylist([
        {"question_id": q, "peer": learner, "model": "m", "position": 0, "sample": 0,
         "prompt": "p", "response": f"{a}", "answer": a, "answer_rule": None, "n_tokens": 3,
         "finish_reason": "stop"} for q, a in answers.items()], schema=RESPONSES_SCHEMA)


def test_a_learner_that_copies_in_the_chain_is_judged_by_its_solo_answers():
    gold = {f"q{i:02d}": str(100 + i) for i in range(20)}
    chain = {q: {"big": g, "small": g, "third": str(int(g) + 7) if i % 2 else g}
             for i, (q, g) in enumerate(gold.items())}  # small copies big on every question
    solo = {q: g if i < 5 else str(int(g) + 1) for i, (q, g) in enumerate(gold.items())}
    solo["q19"] = None  # no answer alone: wrong, and a change from its in-chain answer
    responses = responses_table(chain)
    reliability = estimate_reliability(responses)
    in_chain = dict(zip(reliability.column("peer").to_pylist(),
                        reliability.column("estimated_accuracy").to_pylist()))["small"]

    found = _solo("small", solo_table("small", solo), chain,
                  answer_posteriors(responses, reliability), dataset(gold), "any")

    assert found.gold == 5 / 20 and found.changed == 15 / 20
    assert found.estimate < 0.3 and in_chain > 0.9  # alone it is weak; in the chain, strong
    verdict = Preflight(run_dir="r", n_questions=20, peers=[], agreement={}, majority_share=1.0,
                        reliable_estimate=0.95, reliable_gold=1.0, vote_gold=1.0,
                        solos=[found]).verdicts()
    assert verdict == [verdict[0]] and "better teacher than small alone" in verdict[0]
