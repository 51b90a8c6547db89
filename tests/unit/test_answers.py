"""Answer extraction and equivalence, on real benchmark rows."""

import pytest

from pst_core.answers import extract_answer, is_equivalent, matches_gold
from tests.conftest import read_benchmark


@pytest.mark.parametrize(
    "text, answer, rule",
    [
        ("3 + 4 = 7. The answer is 7.", "7", "answer_is"),
        ("So the total is \\boxed{\\frac{14}{3}}.", "\\frac{14}{3}", "boxed"),
        ("They pay $18 in all.\n#### 18", "18", "hash"),
        ("The answer is: **1,200** dollars.", "1200", "answer_is"),
        ("The final answer is x = 5", "5", "answer_is"),
        ("I think 5 apples and 6 pears", "6", "last_number"),
        ("The answer is N", None, None),  # the template copied literally is no answer
        ("no digits at all", None, None),
    ],
)
def test_extract_rules(text, answer, rule):
    assert tuple(extract_answer(text)) == (answer, rule)


def test_rule_order_is_configurable():
    text = "The answer is 3.\n\\boxed{4}"
    assert extract_answer(text).answer == "4"
    assert extract_answer(text, rules=["answer_is", "boxed"]).answer == "3"


def test_later_statement_wins_within_a_rule():
    assert extract_answer("The answer is 3. Wait, recheck. The answer is 5.").answer == "5"


def test_gsm8k_rationales_extract_to_their_gold():
    rows = read_benchmark("gsm8k")
    for row in rows:
        got = extract_answer(row["meta"]["solution"]).answer
        assert is_equivalent(got, row["answer"]), (row["id"], got, row["answer"])


def test_math500_boxed_solutions_match_their_latex_gold():
    rows = read_benchmark("math500")
    hits = [is_equivalent(extract_answer(r["meta"]["solution"]).answer, r["answer"]) for r in rows]
    # Every MATH-500 solution boxes its answer; equivalence must see through LaTeX spelling.
    assert sum(hits) / len(hits) >= 0.97, sum(hits)


def test_addsub_float_noise_golds():
    rows = [r for r in read_benchmark("addsub") if len(r["answer"]) > 10]
    assert rows, "AddSub has float-noise golds such as 0.6666666666666666"
    for row in rows:
        value = float(row["answer"])
        assert is_equivalent(f"{value:.2f}", row["answer"])
        assert not is_equivalent(f"{value + 0.5:.2f}", row["answer"])


def test_simuleq_multi_answer_golds():
    row = next(r for r in read_benchmark("simuleq") if r["id"] == "simuleq-2598")
    gold, all_answers = row["answer"], row["meta"]["all_answers"]
    assert (gold, all_answers) == ("15", ["15", "9"])
    assert matches_gold("9", gold, all_answers, multi_answer="any")
    assert not matches_gold("9", gold, all_answers, multi_answer="first")
    assert not matches_gold("24", gold, all_answers)


def test_simuleq_rounded_golds():
    assert is_equivalent("583.33", "583.3333")
    assert is_equivalent("583.333333", "583.3333")
    assert not is_equivalent("7", "7.03")  # rounding only counts with 2+ decimals on both sides
    assert not is_equivalent("583.3", "583.3333")
