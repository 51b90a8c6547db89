"""The paired statistics behind every delta in a comparison."""

import pytest

from pst_core.compare import mcnemar_exact, paired_delta, weighted_label_acc


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_paired_delta_interval_and_direction():
    same = [True, False] * 20
    assert paired_delta(same, same) == (0.0, 0.0, 0.0, 1.0)
    better = [True] * 30 + [False] * 10
    worse = [True] * 10 + [False] * 30
    delta, lo, hi, p = paired_delta(better, worse)
    assert delta == pytest.approx(0.5) and 0 < lo < 0.5 < hi <= 1 and p < 1e-5
    # Only the discordant questions carry information: one gained question is no evidence.
    delta, lo, hi, p = paired_delta([True] + [False] * 63, [False] * 64)
    assert delta == pytest.approx(1 / 64) and lo == 0 and p == 1.0


def test_wilson_interval():
    from pst_core.report import wilson

    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0.0, 8)[0] == pytest.approx(0.0, abs=1e-12) and 0.3 < wilson(0.0, 8)[1] < 0.35


def test_weighted_label_acc_is_the_share_of_weight_on_right_targets():
    targets = [{"weight": w, "gold_match": m} for w, m in
               [(1.0, True), (1.0, True), (1.0, False), (5.0, False), (2.0, None)]]
    assert weighted_label_acc(targets) == pytest.approx(2 / 8)  # unaudited rows left out
    uniform = [t | {"weight": 1.0} for t in targets]
    assert weighted_label_acc(uniform) == pytest.approx(2 / 4)  # the plain pseudo-label acc.
    assert weighted_label_acc([]) is None


def test_costs_split_the_wall_time_by_stage(tmp_path):
    """Generation turns and evaluations per benchmark add up to their stage; aggregation counts
    in the total only."""
    from pst_core.compare import Run, costs
    from pst_core.config import parse_config

    cfg = parse_config({"experiment": "x", "rounds": 1, "output_dir": str(tmp_path),
                        "data": {"pool": {"name": "pool", "benchmark": "synthetic"}},
                        "peers": [{"name": p, "source": f"models/{p}"} for p in "ab"]})
    walls = {"wall_s/generate/turn0": 60, "wall_s/generate/turn1": 30, "wall_s/score": 12,
             "wall_s/train": 120, "wall_s/eval/gsm8k": 240, "wall_s/eval/math": 60,
             "wall_s/aggregate": 6}
    metrics = [{"round": 1, "peer": None if name == "wall_s/aggregate" else "a",
                "benchmark": None, "name": name, "value": value} for name, value in walls.items()]
    [cost] = costs([Run(tmp_path, cfg, eval=[], metrics=metrics, targets=[])])
    assert (cost["wall_s_generate"], cost["wall_s_score"], cost["wall_s_train"],
            cost["wall_s_eval"], cost["wall_s"]) == (90, 12, 120, 300, 528)
