"""A built-in offline dataset: two-step arithmetic word problems with computed gold answers.

The problems are in MultiArith's style (two operations on small whole numbers) so that the
offline peers can solve some of them. Generation is deterministic in the seed: the same seed
gives the same problems in the same order, on any machine.

Example:
    >>> rows = generate_problems(2, seed=0)
    >>> [r.id for r in rows]
    ['synthetic-0-0', 'synthetic-0-1']
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pst_core.data.local import Row

_NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas",
          "Kira", "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Ravi", "Sara", "Tom"]
_ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "cards", "shells", "books",
          "balloons", "stamps"]


def _buy_packs(r: random.Random, name: str, item: str) -> tuple[str, int]:
    a, b, c = r.randint(2, 30), r.randint(2, 9), r.randint(2, 12)
    q = (f"{name} has {a} {item}. {name} buys {b} packs with {c} {item} in each pack. "
         f"How many {item} does {name} have now?")
    return q, a + b * c


def _give_and_find(r: random.Random, name: str, item: str) -> tuple[str, int]:
    a = r.randint(20, 90)
    b, c = r.randint(2, a - 5), r.randint(2, 40)
    q = (f"{name} had {a} {item}. {name} gave {b} of them to a friend and then found {c} more. "
         f"How many {item} does {name} have now?")
    return q, a - b + c


def _boxes_minus(r: random.Random, name: str, item: str) -> tuple[str, int]:
    a, b = r.randint(2, 9), r.randint(3, 12)
    c = r.randint(1, a * b - 1)
    q = (f"There are {a} boxes with {b} {item} in each box. {name} takes out {c} {item}. "
         f"How many {item} are left in the boxes?")
    return q, a * b - c


def _share_then_add(r: random.Random, name: str, item: str) -> tuple[str, int]:
    b, k, c = r.randint(2, 8), r.randint(2, 9), r.randint(1, 10)
    q = (f"{name} shares {b * k} {item} equally among {b} children. Then each child gets "
         f"{c} more {item}. How many {item} does each child have?")
    return q, k + c


def _daily_total(r: random.Random, name: str, item: str) -> tuple[str, int]:
    a, b, c = r.randint(3, 25), r.randint(2, 7), r.randint(1, 30)
    q = (f"{name} collects {a} {item} every day for {b} days, and {c} more {item} on the "
         f"last evening. How many {item} did {name} collect in all?")
    return q, a * b + c


def _change_left(r: random.Random, name: str, item: str) -> tuple[str, int]:
    price, count = r.randint(2, 9), r.randint(2, 8)
    paid = price * count + r.randint(1, 30)
    q = (f"{name} buys {count} {item} that cost {price} dollars each and pays with {paid} "
         f"dollars. How many dollars of change does {name} get?")
    return q, paid - price * count


TEMPLATES: list[Callable[[random.Random, str, str], tuple[str, int]]] = [
    _buy_packs, _give_and_find, _boxes_minus, _share_then_add, _daily_total, _change_left,
]


def generate_problems(n: int, seed: int = 0) -> list[Row]:
    """``n`` problems, each from a template the seeded generator picks, gold answers computed."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        template = TEMPLATES[r.randrange(len(TEMPLATES))]
        question, answer = template(r, r.choice(_NAMES), r.choice(_ITEMS))
        rows.append(Row(id=f"synthetic-{seed}-{i}", question=question, answer=str(answer),
                        all_answers=None))
    return rows
