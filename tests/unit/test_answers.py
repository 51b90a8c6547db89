"""Answer extraction and equivalence (real benchmark rows: tests/integration/test_benchmarks.py)."""

import pytest

from pst_core.answers import extract_answer, is_equivalent


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
        # cut off at the token limit inside the box: no answer_is answer, the fallback decides
        ("7 boxes of 8 hold 56.\nThe answer is: \\(\\boxed{", "56", "last_number"),
        ("So 7 x 8 = 54.\nThe answer is: \\(\\boxed{56", "56", "last_number"),
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


def test_simuleq_rounded_golds():
    assert is_equivalent("583.33", "583.3333")
    assert is_equivalent("583.333333", "583.3333")
    assert not is_equivalent("7", "7.03")  # rounding only counts with 2+ decimals on both sides
    assert not is_equivalent("583.3", "583.3333")
