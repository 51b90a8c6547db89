"""The report's generated reading: each verdict follows the paired interval and says when
McNemar's test disagrees; PST's methods are read against the stronger label-free rival."""

from pst_core.report import reading


def _row(method, em, delta=None, lo=None, hi=None, p=None, round_=2, benchmark="math"):
    return {"method": method, "peer": "qwen", "benchmark": benchmark, "round": round_, "em": em,
            "delta_em": delta, "delta_lo": lo, "delta_hi": hi, "mcnemar_p": p,
            "decoding": "t=0.3" if method == "base" else "greedy"}


def _pair(method, other, delta, lo, hi, p, benchmark="math"):
    return {"method": method, "other": other, "peer": "qwen", "benchmark": benchmark, "round": 2,
            "delta_em": delta, "delta_lo": lo, "delta_hi": hi, "mcnemar_p": p}


ROWS = [
    _row("base", 0.60, 0.0, 0.0, 0.0, 1.0, round_=0),
    _row("pst", 0.62, 0.02, -0.03, 0.07, 0.4, round_=1),  # an earlier round: not read
    _row("pst", 0.80, 0.20, 0.12, 0.28, 0.0001),
    _row("pst-uniform", 0.50, -0.10, -0.16, -0.04, 0.001),
    _row("sept", 0.75, 0.15, 0.01, 0.29, 0.07),
    _row("majority", 0.70, 0.10, 0.02, 0.18, 0.01),
]
PAIRS = [
    _pair("pst", "sept", 0.05, 0.004, 0.10, 0.06),
    _pair("pst", "majority", 0.10, 0.04, 0.16, 0.002),
    _pair("pst-uniform", "sept", -0.25, -0.31, -0.19, 0.0001),
    _pair("pst-uniform", "majority", -0.20, -0.26, -0.14, 0.0001),
    _pair("sept", "majority", 0.05, -0.01, 0.11, 0.2),
]


def test_verdicts_against_base_follow_the_interval_and_flag_a_disagreeing_mcnemar():
    lines = reading(ROWS, PAIRS)
    [pst] = [x for x in lines if x.startswith("- pst, ")]
    assert "round 2: EM 80.0% vs base 60.0% (t=0.3): +20.0 points" in pst
    assert pst.endswith("McNemar p < 0.001: better than base.")
    [uniform] = [x for x in lines if x.startswith("- pst-uniform, ")]
    assert uniform.endswith("worse than base.")
    [sept] = [x for x in lines if x.startswith("- sept, ")]
    assert sept.endswith("p = 0.070: better than base by the interval, but McNemar's test does "
                         "not reject a tie: weak evidence.")


def test_pst_methods_are_read_against_the_stronger_label_free_rival():
    rivals = [x for x in reading(ROWS, PAIRS) if " vs " in x.split(":")[0]]
    assert rivals == [
        ("- pst vs sept, qwen on math, round 2: EM 80.0% vs 75.0%: +5.0 points, 95% CI "
         "[+0.4, +10.0], McNemar p = 0.060: better than sept by the interval, but McNemar's test "
         "does not reject a tie: weak evidence."),
        ("- pst-uniform vs sept, qwen on math, round 2: EM 50.0% vs 75.0%: -25.0 points, 95% CI "
         "[-31.0, -19.0], McNemar p < 0.001: worse than sept."),
    ]
    # the rival follows EM: with majority ahead, PST is read against majority
    swapped = [r | {"em": 0.9} if r["method"] == "majority" else r for r in ROWS]
    assert [x.split(",")[0] for x in reading(swapped, PAIRS) if " vs " in x.split(":")[0]] == [
        "- pst vs majority", "- pst-uniform vs majority"]


def test_a_pair_stored_the_other_way_round_is_read_with_its_sign_flipped():
    flipped = [_pair("sept", "pst", -0.05, -0.10, -0.004, 0.06)]
    [line] = [x for x in reading(ROWS[:5], flipped) if x.startswith("- pst vs sept")]
    assert "+5.0 points, 95% CI [+0.4, +10.0]" in line


def test_across_seeds_gives_each_seed_its_em_and_delta_and_their_mean_and_spread():
    from pst_core.compare import across_seeds
    from pst_core.report import seeds_reading

    rows = [r | {"experiment": "x", "seed": s, "rounds": 2} for s in (0, 1) for r in ROWS]
    rows = [r | {"em": 0.76} if (r["method"], r["seed"], r["round"]) == ("pst", 1, 2) else r
            for r in rows]
    pairs = [d | {"experiment": "x", "seed": s, "rounds": 2} for s in (0, 1) for d in PAIRS]
    longer = [r | {"rounds": 3, "round": 3, "em": 0.1} for r in rows if r["seed"] == 0]
    spread = across_seeds(rows + longer, pairs)  # a 3-round run is not another seed of these
    assert {a["method"] for a in spread} == {"pst", "pst-uniform", "sept", "majority"}
    [pst] = [a for a in spread if a["method"] == "pst"]
    assert pst["em"] == [0.80, 0.76] and abs(pst["em_spread"] - 0.04) < 1e-12
    [line] = [x for x in seeds_reading(spread) if x.startswith("- pst,")]
    assert line == ("- pst, qwen on math (x), seeds 0, 1, round 2/2: EM 80.0% and 76.0%, mean "
                    "78.0%, spread 4.0 points; vs sept +5.0 [+0.4, +10.0] (p = 0.060) and +5.0 "
                    "[+0.4, +10.0] (p = 0.060), mean +5.0 points.")
    [sept] = [x for x in seeds_reading(spread) if x.startswith("- sept,")]
    assert "vs sept" not in sept
    # majority pairs as (sept, majority): read the other way round
    [majority] = [a for a in spread if a["method"] == "majority"]
    assert [d["delta_em"] for d in majority["vs_rival"]] == [-0.05, -0.05]
