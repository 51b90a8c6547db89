"""Final-answer extraction and answer equivalence.

Extraction tries named rules in order (``boxed``, ``answer_is``, ``hash``, ``last_number``) and
records which one fired, so a researcher can see how much of a score rests on the fallback.
Equivalence compares numbers with a tolerance (AddSub golds like ``0.6666666666666666``, SimulEq
golds rounded to 4 places) and everything else with math-verify (LaTeX answers of MATH-500).

Example:
    >>> extract_answer("3 + 4 = 7. The answer is 7.")
    Extraction(answer='7', rule='answer_is')
    >>> is_equivalent("0.67", "0.6666666666666666")
    True
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

RULES = ("boxed", "answer_is", "hash", "last_number")

NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(NUMBER)
_ANSWER_IS_RE = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*(.+?)(?=(?:\.\s)|\.?\s*$|\n)",
    re.IGNORECASE | re.MULTILINE,
)
_HASH_RE = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_FRACTION_RE = re.compile(r"^(-?\d+)\s*/\s*(\d+)$")


class Extraction(NamedTuple):
    """An extracted final answer (None when no rule matched) and the rule that produced it."""

    answer: str | None
    rule: str | None


def extract_answer(text: str, rules: Sequence[str] = RULES) -> Extraction:
    """Extract the final answer of a response by the first rule (in ``rules`` order) that matches.

    Within a rule the *last* match wins (models restate intermediate results first). Numeric
    answers are normalized (``1,200.0`` -> ``1200``); other answers keep their LaTeX.
    """
    for rule in rules:
        candidate = _RULE_FUNCS[rule](text)
        if candidate is not None:
            return Extraction(candidate, rule)
    return Extraction(None, None)


def _boxed(text: str) -> str | None:
    contents = _braced_after(text, r"\boxed")
    return _canonical(contents[-1]) if contents else None


def _answer_is(text: str) -> str | None:
    for match in reversed(list(_ANSWER_IS_RE.finditer(text))):
        answer = _answer_from_phrase(match.group(1))
        if answer is not None:
            return answer
    return None


def _hash(text: str) -> str | None:
    matches = _HASH_RE.findall(text)
    return _answer_from_phrase(matches[-1]) if matches else None


def _last_number(text: str) -> str | None:
    numbers = _NUMBER_RE.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


_RULE_FUNCS = {"boxed": _boxed, "answer_is": _answer_is, "hash": _hash, "last_number": _last_number}


def _braced_after(text: str, command: str) -> list[str]:
    """The brace-balanced arguments of every ``command{...}`` in ``text``."""
    out = []
    start = text.find(command)
    while start != -1:
        i = start + len(command)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    out.append(text[i + 1 : j])
                    break
                j += 1
        start = text.find(command, i)
    return out


def _canonical(raw: str) -> str | None:
    """A boxed answer as written, with numbers normalized; None when empty."""
    s = re.sub(r"^\$+|\$+$", "", raw.strip()).strip().rstrip(".").strip()
    if not s:
        return None
    plain = s.replace("\\$", "").replace("\\%", "").replace("%", "").strip()
    return normalize_number(plain) if re.fullmatch(NUMBER, plain) else s


def _answer_from_phrase(raw: str) -> str | None:
    """The answer inside a phrase such as ``$18 dollars.`` or ``x = 5``, or None if it has none.

    A number with decoration becomes the number; a LaTeX expression without prose around it
    (``\\frac{14}{3}``) or a fraction is kept; text without a number (the literal ``N`` that
    weak models copy from the prompt) is no answer, and so is an expression that opens a brace
    it never closes (``\\(\\boxed{56``: the response was cut off at the token limit).
    """
    s = raw.strip().strip("*").strip()
    if s.count("{") > s.count("}"):
        return None
    inner = _braced_after(s, r"\boxed")
    if inner:
        return _canonical(inner[-1])
    s = s.rsplit("=", 1)[-1]
    s = _canonical(s.strip().strip("*")) or ""
    if re.fullmatch(NUMBER, s) or _FRACTION_RE.match(s):
        return s
    prose = re.findall(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", "", s))
    if "\\" in s and not prose:
        return s
    numbers = _NUMBER_RE.findall(s)
    return normalize_number(numbers[0]) if numbers else None


def normalize_number(text: str) -> str:
    """``"1,200.50"`` -> ``"1200.5"``, ``"7.0"`` -> ``"7"``, ``"-.5"`` -> ``"-0.5"``."""
    value = Decimal(text.replace(",", "").strip())
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def to_number(text: str) -> Decimal | None:
    """The numeric value of an answer string (plain number or ``a/b``), or None."""
    s = text.replace(",", "").replace("$", "").strip()
    fraction = _FRACTION_RE.match(s)
    try:
        if fraction:
            return Decimal(fraction.group(1)) / Decimal(fraction.group(2))
        if re.fullmatch(NUMBER, s):
            return Decimal(s)
    except (InvalidOperation, ZeroDivisionError):
        return None
    return None


def _decimals(text: str) -> int:
    s = text.replace(",", "").strip()
    return len(s.split(".", 1)[1]) if "." in s and "/" not in s else 0


def is_equivalent(predicted: str | None, gold: str | None, rel_tol: float = 1e-6) -> bool:
    """Whether a predicted answer equals a gold answer.

    Numbers are equal when they agree to ``rel_tol`` (relative, with an absolute floor of
    ``rel_tol``), or when both carry at least 2 decimals and agree once rounded to the shorter
    one's decimals (``583.33`` vs the rounded gold ``583.3333``). Anything else goes through
    math-verify, which understands LaTeX (``\\frac{1}{2}`` = ``0.5``).
    """
    if predicted is None or gold is None:
        return False
    if predicted.strip() == gold.strip():
        return True
    a, b = to_number(predicted), to_number(gold)
    if a is not None and b is not None:
        if abs(a - b) <= Decimal(str(rel_tol)) * max(Decimal(1), abs(b)):
            return True
        places = min(_decimals(predicted), _decimals(gold))
        return places >= 2 and round(a, places) == round(b, places)
    return _math_verify(predicted, gold)


def matches_gold(
    predicted: str | None,
    gold: str | None,
    all_answers: Sequence[str] | None = None,
    multi_answer: str = "any",
) -> bool:
    """Whether ``predicted`` is correct; with ``multi_answer="any"`` any of ``all_answers`` counts."""
    candidates = [gold]
    if multi_answer == "any" and all_answers:
        candidates += list(all_answers)
    return any(is_equivalent(predicted, c) for c in candidates if c is not None)


def group_answers(answers: Sequence[str | None]) -> list[list[int]]:
    """Indices of ``answers`` grouped by equivalence, in order of first appearance; None is in
    no group.

    Example:
        >>> group_answers(["3", None, "3.0", "4"])
        [[0, 2], [3]]
    """
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if is_equivalent(answer, answers[group[0]]):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _math_verify(predicted: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify times out via signal.alarm, which only works in the main thread (Prefect runs
    # tasks in worker threads): keep its timeout there, and turn it off elsewhere.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout)
        pred_parsed = parse(_as_latex(predicted), parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises on malformed LaTeX: that is simply "not equal"
        return False


def _as_latex(answer: str) -> str:
    s = answer.strip()
    return s if s.startswith("$") or "\\boxed" in s else f"${s}$"
