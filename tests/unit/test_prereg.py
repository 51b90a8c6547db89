"""Pre-registered answers: the seed-pooled estimate, its hierarchical interval and the verdicts."""

from pathlib import Path

import numpy as np
import pytest

from pst_core.compare import Run
from pst_core.config import parse_config
from pst_core.errors import ConfigError
from pst_core.methods import REGISTRY
from pst_core.prereg import (
    Plan,
    answer_plan,
    hierarchical_interval,
    load_plan,
    render_answers,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(method: str, seed: int, rounds: int, correct: dict[int, list[bool]],
         samples: dict[int, list[list[tuple[bool, float]]]] | None = None) -> Run:
    """A run whose greedy answers at each round are ``correct`` (question i right or not) and,
    optionally, whose sampled answers are (correct, verify_score) per question."""
    raw = {"experiment": "x", "seed": seed, "rounds": rounds, "run": f"{method}-{seed}",
           "method": {"name": method, "temperatures": [0.0]} if method == "base" else method,
           "data": {"pool": {"name": "pool", "benchmark": "synthetic", "synthetic": {"n": 8}}},
           "peers": [{"name": "p", "source": "smollm2-135m-instruct"},
                     {"name": "q", "source": "smollm2-135m-instruct"}], "learners": ["p"]}
    row = {"model": "p", "benchmark": "b", "response": "r", "answer": "1", "n_tokens": 1,
           "finish_reason": "stop", "verify_score": None, "sample": 0}
    evals = [row | {"round": r, "question_id": f"q{i}", "kind": "greedy", "correct": c}
             for r, answers in correct.items() for i, c in enumerate(answers)]
    evals += [row | {"round": r, "question_id": f"q{i}", "kind": "sample", "sample": j,
                     "correct": c, "verify_score": score}
              for r, questions in (samples or {}).items() for i, drawn in enumerate(questions)
              for j, (c, score) in enumerate(drawn)]
    return Run(Path(f"runs/x/{method}-{seed}"), parse_config(raw), evals, [], [])


def _plan(claim="greater", seeds=(0, 1), metric="em", control="sept", margin=0.03) -> Plan:
    return Plan.model_validate({"equivalence_margin": margin, "bootstrap": 2000, "questions": [{
        "id": "Q", "kind": "primary", "title": "t", "metric": metric, "claim": claim,
        "peer": "p", "benchmark": "b", "seeds": list(seeds),
        "treatment": {"experiment": "x", "method": "pst", "rounds": 1, "round": 1},
        "control": {"experiment": "x", "method": control, "rounds": 1, "round": 1}}]})


def test_the_interval_of_identical_differences_is_that_difference():
    assert hierarchical_interval(np.full((3, 50), 0.2), 500) == pytest.approx((0.2, 0.2))


def test_seeds_that_disagree_widen_the_interval_beyond_either_seeds_own():
    rng = np.random.default_rng(1)
    agree = (rng.random((3, 200)) < 0.6).astype(float) - (rng.random((3, 200)) < 0.5)
    disagree = agree + np.array([[0.3], [0.0], [-0.3]])
    lo, hi = hierarchical_interval(agree, 2000)
    wide_lo, wide_hi = hierarchical_interval(disagree, 2000)
    assert wide_hi - wide_lo > 2 * (hi - lo)


def test_the_estimate_is_the_mean_of_each_seeds_paired_difference():
    all_right = [True] * 40
    runs = [_run("pst", 0, 1, {1: all_right}), _run("sept", 0, 1, {1: [True] * 32 + [False] * 8}),
            _run("pst", 1, 1, {1: all_right}), _run("sept", 1, 1, {1: [True] * 24 + [False] * 16})]
    [a] = answer_plan(_plan(), runs)
    assert a["seeds"] == [0, 1] and a["n_questions"] == 40
    assert a["estimate"] == pytest.approx(0.3)  # (0.2 + 0.4) / 2
    assert [s["delta"] for s in a["per_seed"]] == pytest.approx([0.2, 0.4])
    assert a["lo"] <= 0.3 <= a["hi"] and a["per_seed"][0]["p"] == pytest.approx(2 / 256)
    assert a["verdict"] == "supported"
    [b] = answer_plan(_plan(claim="less"), runs)
    assert b["verdict"] == "contradicted"


def test_a_tie_is_inconclusive_and_within_the_margin_says_so():
    right = [True, False] * 100
    runs = [_run("pst", 0, 1, {1: right}), _run("sept", 0, 1, {1: right})]
    [a] = answer_plan(_plan(seeds=[0]), runs)
    assert a["verdict"] == "inconclusive: no difference as large as 3 points"
    flipped = [not x for x in right[:20]] + right[20:]
    [b] = answer_plan(_plan(seeds=[0], margin=0.0), [runs[0], _run("sept", 0, 1, {1: flipped})])
    assert b["verdict"] == "inconclusive"


def test_missing_seeds_make_an_interim_answer_and_none_an_unanswered_one():
    runs = [_run("pst", 0, 1, {1: [True] * 10}), _run("sept", 0, 1, {1: [False] * 10})]
    [a] = answer_plan(_plan(seeds=[0, 1, 2]), runs)
    assert a["verdict"] == "interim (supported; seeds 0 of 0, 1, 2)"
    assert a["missing"] == ["pst (x, 1 rounds, seed 1)", "sept (x, 1 rounds, seed 1)",
                            "pst (x, 1 rounds, seed 2)", "sept (x, 1 rounds, seed 2)"]
    [b] = answer_plan(_plan(seeds=[3]), runs)
    assert b["verdict"] == "not yet run" and b["estimate"] is None
    text = "\n".join(render_answers([a, b], "plan.yaml"))
    assert "| Q | primary | t | p | b | 0 | 10 | +100.0 [+100.0, +100.0] |" in text
    assert "Not there yet: pst (x, 1 rounds, seed 1);" in text


def test_an_untrained_control_serves_every_seed_at_its_best_temperature():
    base = _run("base", 0, 0, {0: [True] * 5 + [False] * 5})
    runs = [base, _run("pst", 0, 1, {1: [True] * 10}), _run("pst", 1, 1, {1: [True] * 10})]
    [q] = _plan().questions
    control = q.control.model_copy(update={"method": "base", "rounds": None, "round": 0,
                                           "decoding": "best"})
    [a] = answer_plan(Plan(questions=[q.model_copy(update={"control": control})]), runs)
    assert a["seeds"] == [0, 1] and a["estimate"] == pytest.approx(0.5)


def test_the_gv_gap_difference_pairs_each_questions_gap_contribution():
    # pst: the pick (highest score) is right where half the samples are: gap +0.5 per question;
    # sept: the pick is the wrong sample: gap -0.5. Difference +1.0.
    good = [[(True, 2.0), (False, 1.0)]] * 4
    bad = [[(True, 1.0), (False, 2.0)]] * 4
    runs = [_run("pst", 0, 1, {1: [True] * 4}, {1: good}),
            _run("sept", 0, 1, {1: [True] * 4}, {1: bad})]
    [a] = answer_plan(_plan(seeds=[0], metric="gv_gap_abs", claim="less"), runs)
    assert a["estimate"] == pytest.approx(1.0) and a["verdict"] == "contradicted"
    assert a["per_seed"][0]["p"] is None  # McNemar pairs correctness, not gap contributions


def test_the_committed_preregistration_names_real_methods_and_rounds():
    plan = load_plan(ROOT / "docs" / "preregistration.yaml")
    assert {q.id for q in plan.questions} >= {"P1", "P2"}
    for q in plan.questions:
        for side in filter(None, (q.treatment, q.control)):
            assert side.method in REGISTRY
            assert side.rounds is None or side.round <= side.rounds


def test_a_bad_plan_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("questions:\n  - id: Q\n    kind: primary\n")
    with pytest.raises(ConfigError, match=r"plan.yaml: questions.0.title: Field required"):
        load_plan(path)
