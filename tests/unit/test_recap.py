"""The closing summary in words (``recap``), on hand-built metrics rows: what it says and when,
not whether a run's numbers are good."""

from pst_core.recap import recap

PEERS = ("qwen-0.5b", "smollm2-135m", "gemma3-270m")


def _row(r, name, value, peer=None, benchmark=None):
    return {"round": r, "peer": peer, "benchmark": benchmark, "name": name, "value": value}


def _demo_like() -> list[dict]:
    """Three peers, 8 eval questions, two PST rounds of 8 pool questions."""
    right = {"qwen-0.5b": (6, 7, 7), "smollm2-135m": (1, 1, 0), "gemma3-270m": (0, 0, 1)}
    rows = []
    for r in range(3):
        if r:
            rows.append(_row(r, "n_questions", 8.0))
        for peer in PEERS:
            rows += [_row(r, "em", right[peer][r] / 8, peer, "synthetic-eval"),
                     _row(r, "n_questions", 8.0, peer, "synthetic-eval")]
            if r:
                rows += [_row(r, name, v, peer) for name, v in (
                    ("n_targets", 8.0), ("pseudo_label_acc", 0.75), ("weight_std", 0.21),
                    ("weight_max", 1.8), ("mean_pmi", -0.4))]
    return rows


def test_per_round_and_peer_em_targets_and_weights_then_a_reading():
    lines = recap(_demo_like())
    assert lines[1] == "round 0, qwen-0.5b (untuned): EM 6/8 (75%)"
    assert lines[4] == (
        "round 1, qwen-0.5b: EM 6/8 (75%) -> 7/8 (88%), trained on 8 targets of which 75% had "
        "the right answer (audited against gold, never used in training), PMI weights (mean 1) "
        "spread 0.21 (std) up to 1.8")
    assert lines[9].startswith("round 2, gemma3-270m: EM 0/8 (0%) -> 1/8 (12%), trained on 8")
    assert lines[10] == (
        "Reading: smollm2-135m and gemma3-270m start below 25% EM in round 0 (smollm2-135m 1/8 (12%), "
        "gemma3-270m 0/8 (0%)): too weak to be a useful teacher or to learn much on 8 questions "
        "a round. EM is measured on 8 questions (one is 12.5 points): a change of one or two "
        "questions is noise. From round 0 to 2, questions gained: qwen-0.5b +1, smollm2-135m -1, "
        "gemma3-270m +1; all within that noise. Numbers that mean something come from the "
        "MultiArith config sets (data/configs/offline-strong/ compares the methods; "
        "docs/usage.md).")
    assert len(lines) == 11 and lines[0].startswith("What happened (EM:")


def test_two_benchmarks_no_gold_equal_weights_and_a_change_beyond_noise():
    rows = []
    for r, right in ((1, 40), (2, 50)):  # a run without round 0 (eval.initial: false)
        rows += [_row(r, "n_questions", 64.0), _row(r, "n_targets", 64.0, "p"),
                 _row(r, "pseudo_label_acc", float("nan"), "p"), _row(r, "weight_std", 0.0, "p"),
                 _row(r, "weight_max", 1.0, "p")]
        for b, n in (("a", 100), ("b", 50)):
            rows += [_row(r, "em", right / n, "p", b), _row(r, "n_questions", float(n), "p", b)]
    _, first, second, reading = recap(rows)
    assert first == "round 1, p: EM on a 40/100 (40%), EM on b 40/50 (80%), trained on 64 " \
        "targets (no gold answers to audit them), all weighted equally"
    assert second.startswith("round 2, p: EM on a 40/100 (40%) -> 50/100 (50%), EM on b")
    assert "below 25%" not in reading
    assert "50 questions (one is 2.0 points) and 100 questions (one is 1.0 points)" in reading
    assert "p on a +10, p on b +10; larger changes still need a paired interval" in reading


def test_an_untrained_run_and_an_empty_one():
    rows = [_row(0, "em", 0.75, "p", "b"), _row(0, "n_questions", 4.0, "p", "b")]
    assert recap(rows, ["p", "s", "g"])[1:] == [
        "round 0, p (untuned): EM 3/4 (75%)",
        "s and g answered their turns, untrained and unevaluated (`learners` names p).",
        ("Reading: EM is measured on 4 questions (one is 25.0 points): a change of one or two "
         "questions is noise. Numbers that mean something come from the MultiArith config sets "
         "(data/configs/offline-strong/ compares the methods; docs/usage.md).")]
    assert len(recap(rows)) == 3  # without the config's peers: only the evaluated one
    assert recap([]) == ["No round has been evaluated yet."]


def test_a_weak_peer_in_a_run_without_round_zero():
    rows = [_row(1, "n_questions", 8.0), _row(1, "em", 0.125, "p", "b"),
            _row(1, "n_questions", 8.0, "p", "b")]
    assert recap(rows)[2].startswith(
        "Reading: p is below 25% EM in round 1 (p 1/8 (12%)): too weak to be a useful teacher or "
        "to learn much on 8 questions a round. EM is measured on 8 questions")
