"""Aggregation rules: majority with equivalence, ties to the later peer, drops with reasons."""

import pyarrow as pa

from pst_core.aggregate import aggregate_responses, audit_gold, training_view
from pst_core.schemas import RESPONSES_SCHEMA


def responses(*answers_per_question):
    rows = []
    for q, answers in enumerate(answers_per_question):
        for position, answer in enumerate(answers):
            rows.append({
                "question_id": f"q{q}", "peer": f"p{position}", "model": "m", "position": position,
                "sample": 0, "prompt": "", "response": f"resp q{q} p{position} -> {answer}",
                "answer": answer, "answer_rule": "answer_is" if answer else None,
                "n_tokens": 5, "finish_reason": "stop",
            })
    return pa.Table.from_pylist(rows, schema=RESPONSES_SCHEMA)


def test_majority_with_equivalence_and_latest_carrier():
    aggregates, rejected = aggregate_responses(responses(["7", "7.0", "8"]))
    row = aggregates.to_pylist()[0]
    assert (row["answer"], row["source_peer"], row["votes"], row["agreement"]) == ("7.0", "p1", 2, 2 / 3)
    assert rejected.num_rows == 0


def test_ties_go_to_the_later_peer():
    row = aggregate_responses(responses(["1", "2", "3"]))[0].to_pylist()[0]
    assert (row["answer"], row["source_peer"], row["votes"]) == ("3", "p2", 1)
    row = aggregate_responses(responses(["5", "6", "6", "5"]))[0].to_pylist()[0]
    assert (row["answer"], row["source_peer"]) == ("5", "p3")


def test_missing_answers_do_not_vote_and_empty_questions_are_rejected():
    aggregates, rejected = aggregate_responses(responses(["4", None, None], [None, None, None]))
    assert aggregates.column("question_id").to_pylist() == ["q0"]
    assert rejected.to_pylist() == [{"question_id": "q1", "reason": "no peer answer extractable"}]


def test_last_rule_takes_the_last_responder():
    aggregates, rejected = aggregate_responses(responses(["1", "1", "2"], ["3", "3", None]), "last")
    assert aggregates.to_pylist()[0]["answer"] == "2" and aggregates.to_pylist()[0]["votes"] == 1
    assert rejected.to_pylist() == [{"question_id": "q1", "reason": "last peer has no answer"}]


def test_gold_audit_is_separate_and_not_in_the_training_view():
    aggregates, _ = aggregate_responses(responses(["7", "7", "8"], ["2", "2", "2"]))
    assert aggregates.column("gold_match").null_count == 2
    dataset = pa.table({"id": ["q0", "q1"], "answer": ["7", None],
                        "all_answers": pa.array([None, None], pa.list_(pa.string()))})
    audited = audit_gold(aggregates, dataset)
    assert audited.column("gold_match").to_pylist() == [True, None]
    assert "gold_match" not in training_view(audited).column_names


def test_earliest_representative_keeps_the_first_carrier():
    row = aggregate_responses(responses(["7", "8", "7"]), representative="earliest")[0].to_pylist()[0]
    assert (row["answer"], row["source_peer"], row["votes"]) == ("7", "p0", 2)


def test_a_cut_off_carrier_is_the_target_only_when_no_carrier_finished():
    table = responses(["7", "7", "7", "8"], ["5", "5", "6"])
    cut = {("q0", 0), ("q0", 2), ("q1", 0), ("q1", 1)}  # cut off at the token limit
    table = table.set_column(
        table.schema.get_field_index("finish_reason"), "finish_reason",
        pa.array(["length" if (r["question_id"], r["position"]) in cut else "stop"
                  for r in table.to_pylist()]))
    for representative, q1_source in (("earliest", "p0"), ("latest", "p1")):
        q0, q1 = aggregate_responses(table, representative=representative)[0].to_pylist()
        assert (q0["answer"], q0["source_peer"], q0["votes"]) == ("7", "p1", 3)  # p1 alone finished
        # no carrier of q1's "5" finished: the rule's own pick among the cut-off ones
        assert (q1["answer"], q1["source_peer"]) == ("5", q1_source)
