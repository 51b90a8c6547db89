"""The PMI weights' audit: AUROC against the gold audit and against word-for-word copying."""

import pyarrow as pa
import pytest

from pst_core.pmi_audit import audit_weights, auroc
from pst_core.schemas import RESPONSES_SCHEMA, TARGETS_SCHEMA


def test_auroc_counts_pairs_and_half_ties():
    assert auroc([3, 2, 1], [True, True, False]) == 1.0
    assert auroc([1, 2, 3], [True, True, False]) == 0.0
    assert auroc([1, 1], [True, False]) == 0.5
    assert auroc([2, 1, 2], [True, False, False]) == pytest.approx(0.75)
    assert auroc([1, 2], [True, True]) is None  # no negative to compare with


def test_copied_targets_and_right_targets_are_told_apart_by_their_weights():
    targets = [  # the learner's target per question, its weight, and whether it is right
        ("q1", 0.2, True), ("q2", 0.3, False), ("q3", 1.5, True), ("q4", 2.0, None)]
    first = {"q1": "A says 4", "q2": "A says 5", "q3": "A says 6", "q4": "A says 7"}
    learner = {"q1": "A says 4", "q2": "  A says 5\n", "q3": "I think 6", "q4": "I say 7"}
    table = pa.Table.from_pylist(
        [{"question_id": q, "peer": "l", "response": first[q], "answer": None, "weight": w,
          "gold_match": g} for q, w, g in targets], TARGETS_SCHEMA)
    responses = pa.Table.from_pylist(
        [{"question_id": q, "peer": peer, "model": "m", "position": position, "sample": 0,
          "prompt": "", "response": text[q], "answer": None, "answer_rule": None, "n_tokens": 1,
          "finish_reason": "stop"}
         for q in first for peer, position, text in (("a", 0, first), ("l", 1, learner))],
        RESPONSES_SCHEMA)
    [row] = audit_weights(table, responses, 2)
    assert (row["round"], row["peer"], row["n_targets"], row["n_right"], row["n_copied"]) == (
        2, "l", 4, 2, 2)  # q4 has no gold; on q1 and q2 (whitespace aside) l restated a
    assert row["auroc_right"] == 0.5  # of the right targets, q3 outweighs the wrong q2, q1 not
    assert row["auroc_copied"] == 0.0  # copied targets weigh less than every other
    assert row["weight_copied"] == pytest.approx(0.25) and row["weight_other"] == pytest.approx(1.75)
    assert row["weight_right"] == pytest.approx(0.85) and row["weight_wrong"] == pytest.approx(0.3)
    first_peer = audit_weights(table.set_column(1, "peer", pa.array(["a"] * 4)), responses, 2)
    assert first_peer[0]["n_copied"] == 0  # nobody answered before the first peer
