"""The pure functions behind the headline numbers: the GV gap and EM (``eval_metrics``), each
method's training targets, and a round's metrics table (``round_metrics``)."""

import math

import pyarrow as pa
import pytest

from pst_core.evaluate import eval_metrics
from pst_core.metrics import round_metrics
from pst_core.schemas import (
    AGGREGATES_SCHEMA,
    EVAL_SCHEMA,
    RESPONSES_SCHEMA,
    TARGETS_SCHEMA,
    TRAIN_LOG_SCHEMA,
)
from pst_core.store import RunLayout, write_table
from pst_core.targets import aggregate_targets, majority_targets, own_targets, teacher_targets


def _eval_row(q, kind, correct, sample=0, score=None, model="m", tokens=10):
    return {"round": 1, "model": model, "benchmark": "b", "question_id": q, "kind": kind,
            "sample": sample, "response": "r", "answer": "1", "correct": correct,
            "n_tokens": tokens, "finish_reason": "stop", "verify_score": score}


def _metrics(rows):
    return {m["name"]: m["value"] for m in eval_metrics(pa.Table.from_pylist(rows, EVAL_SCHEMA))}


def test_gv_gap_is_verified_pick_minus_mean_sample_accuracy():
    rows = [
        _eval_row("q1", "greedy", True), _eval_row("q2", "greedy", False),
        # q1: samples right, wrong; the verifier prefers the right one.
        _eval_row("q1", "sample", True, 0, score=2.0), _eval_row("q1", "sample", False, 1, -1.0),
        # q2: samples wrong, right; the verifier prefers the wrong one.
        _eval_row("q2", "sample", False, 0, score=0.5), _eval_row("q2", "sample", True, 1, 0.1),
    ]
    m = _metrics(rows)
    assert m["em"] == 0.5 and m["n_questions"] == 2
    assert m["mean_sample_acc"] == 0.5 and m["verified_acc"] == 0.5
    assert m["gv_gap_abs"] == 0.0 and m["gv_gap_rel"] == 0.0
    rows[4]["verify_score"] = -3.0  # now the verifier picks q2's right sample too
    m = _metrics(rows)
    assert m["verified_acc"] == 1.0 and m["gv_gap_abs"] == 0.5 and m["gv_gap_rel"] == 1.0
    assert m["eval_tokens"] == 60


def test_gv_gap_ties_go_to_the_first_sample_and_all_right_has_no_relative_gap():
    tied = [_eval_row("q", "greedy", True), _eval_row("q", "sample", False, 0, score=1.0),
            _eval_row("q", "sample", True, 1, score=1.0)]
    assert _metrics(tied)["verified_acc"] == 0.0
    right = [_eval_row("q", "greedy", True), _eval_row("q", "sample", True, 0, score=0.0)]
    assert math.isnan(_metrics(right)["gv_gap_rel"])


def test_base_sweep_reports_each_temperature_and_the_best():
    rows = [_eval_row("q1", "greedy", False), _eval_row("q2", "greedy", True),
            _eval_row("q1", "t=0.5", True), _eval_row("q2", "t=0.5", True),
            _eval_row("q1", "t=1", True), _eval_row("q2", "t=1", True),
            _eval_row("q1", "sample", True, score=0.0)]
    m = _metrics(rows)
    assert (m["em@t=0"], m["em@t=0.5"], m["em@t=1"]) == (0.5, 1.0, 1.0)
    assert m["em_best"] == 1.0 and m["best_temperature"] == 0.5  # ties: the lower temperature


def _response(q, answer, sample=0, peer="p", position=0):
    return {"question_id": q, "peer": peer, "model": "m", "position": position, "sample": sample,
            "prompt": "x", "response": f"says {answer}", "answer": answer, "answer_rule": "r",
            "n_tokens": 3, "finish_reason": "stop"}


def _aggregate(q, answer, source="p"):
    return {"question_id": q, "response": f"a* {answer}", "answer": answer, "method": "vote",
            "source_peer": source, "votes": 2, "n_peers": 3, "agreement": 2 / 3,
            "gold_match": True}


def test_pst_targets_are_the_aggregates_with_the_peer_weights():
    aggregates = pa.Table.from_pylist([_aggregate("q1", "4"), _aggregate("q2", "5")],
                                      AGGREGATES_SCHEMA)
    weighted = aggregate_targets(aggregates, "p", {"q1": 0.5, "q2": 1.5}).to_pylist()
    assert [(t["response"], t["weight"]) for t in weighted] == [("a* 4", 0.5), ("a* 5", 1.5)]
    assert all(t["gold_match"] is None for t in weighted)  # the audit is filled later, apart
    uniform = aggregate_targets(aggregates, "p", None).to_pylist()
    assert [t["weight"] for t in uniform] == [1.0, 1.0]
    # A question the peer has no PMI row for (it had no response) gets no target.
    assert len(aggregate_targets(aggregates, "p", {"q2": 1.0})) == 1


def test_sept_targets_are_its_own_responses():
    responses = pa.Table.from_pylist([_response("q1", "4"), _response("q2", None)],
                                     RESPONSES_SCHEMA)
    targets = own_targets(responses, "p").to_pylist()
    assert [(t["response"], t["weight"]) for t in targets] == [("says 4", 1.0), ("says None", 1.0)]


def test_distill_targets_are_the_teachers_finished_answers():
    rows = [_response("q1", "4"), _response("q2", None), _response("q3", "7") | {
        "finish_reason": "length"}]
    targets = teacher_targets(pa.Table.from_pylist(rows, RESPONSES_SCHEMA), "learner").to_pylist()
    assert [(t["question_id"], t["peer"], t["response"], t["weight"]) for t in targets] == [
        ("q1", "learner", "says 4", 1.0)]  # q2 gives no answer, q3 was cut off


def test_majority_targets_carry_the_majority_answer_above_the_threshold():
    rows = [_response("q1", a, i) for i, a in enumerate(["4", "4.0", "5", "4"])]
    rows += [_response("q2", a, i) for i, a in enumerate(["1", "2", "3", None])]
    table = pa.Table.from_pylist(rows, RESPONSES_SCHEMA)
    targets = majority_targets(table, "p", min_agreement=0.5, per_question=2).to_pylist()
    assert [(t["question_id"], t["response"]) for t in targets] == [
        ("q1", "says 4"), ("q1", "says 4.0")]  # equivalence-aware; q2 has no majority
    assert len(majority_targets(table, "p", min_agreement=0.25, per_question=1)) == 2


@pytest.fixture()
def round_tables(tmp_path):
    layout = RunLayout(tmp_path / "run")
    write_table(pa.Table.from_pylist([_eval_row("q1", "greedy", True, model="p"),
                                      _eval_row("q1", "sample", True, score=0.0, model="p")],
                                     EVAL_SCHEMA), layout.eval(1), EVAL_SCHEMA)
    write_table(pa.Table.from_pylist([_response("q1", "4"), _response("q2", None)],
                                     RESPONSES_SCHEMA), layout.responses(1), RESPONSES_SCHEMA)
    targets = [{"question_id": "q1", "peer": "p", "response": "x", "answer": "4", "weight": w,
                "gold_match": g} for w, g in ((0.5, True), (1.5, False))]
    write_table(pa.Table.from_pylist(targets, TARGETS_SCHEMA), layout.targets(1), TARGETS_SCHEMA)
    log = [{"peer": "p", "step": s, "epoch": 0, "loss": loss, "weighted_loss": loss, "lr": 1e-4,
            "n_examples": 2, "n_target_tokens": 9} for s, loss in ((1, 2.0), (2, 1.0))]
    write_table(pa.Table.from_pylist(log, TRAIN_LOG_SCHEMA), layout.train_log(1), TRAIN_LOG_SCHEMA)
    timings = layout.round_dir(1) / "timings"
    timings.mkdir()
    (timings / "train_p.json").write_text(
        '{"stage": "train", "peer": "p", "wall_s": 3.5, "rss_gb": 1.25}')
    # Written before peak memory was recorded: its wall time still counts.
    (timings / "score_p.json").write_text('{"stage": "score", "peer": "p", "wall_s": 2.0}')
    return layout


def test_round_metrics_gathers_training_side_and_timings(round_tables):
    rows = round_metrics(round_tables, 1, ["p"]).to_pylist()
    by_name = {(m["name"], m["peer"], m["benchmark"]): m["value"] for m in rows}
    assert by_name[("em", "p", "b")] == 1.0
    assert by_name[("n_questions", None, None)] == 2
    assert by_name[("pseudo_label_acc", "p", None)] == 0.5
    assert by_name[("answer_rate", "p", None)] == 0.5
    assert by_name[("weight_max", "p", None)] == 1.5 and by_name[("weight_std", "p", None)] == 0.5
    assert (by_name[("train_loss_first", "p", None)], by_name[("train_loss_last", "p", None)]) \
        == (2.0, 1.0)
    assert by_name[("wall_s/train", "p", None)] == 3.5
    assert by_name[("rss_gb/train", "p", None)] == 1.25
    assert by_name[("wall_s/score", "p", None)] == 2.0 and ("rss_gb/score", "p", None) not in by_name
    assert ("agreement", None, None) not in by_name  # no aggregates: not a PST round
