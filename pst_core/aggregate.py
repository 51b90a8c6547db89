"""Aggregate (docs/methods.md, step 2): one training target per question from the peers'
responses.

``vote``: the majority over the peers' extracted answers (equivalence-aware), ties broken towards
the later peer, so with no majority the last peer wins; the target is the latest response that
carries the winning answer, or the earliest (``representative: earliest``: later peers often
restate an earlier worked answer in one line, which as a target teaches skipping the working).
``last``: the last responder's response (the reference of the paper's reading). A question whose
aggregate has no extractable answer is dropped, with its reason kept in the rejected table.

``reliable`` (for groups whose peers are weaker than the learner, where the vote's ties go to
the weakest peer): peers are weighed by a label-free reliability estimate
(``reliability.estimate_reliability``); the winner is the candidate answer with the highest
posterior (``reliability.answer_posteriors``; ties to the one carried by the more reliable
peer), questions whose winning posterior is below ``min_share`` are rejected, and the target is
the response of the most reliable peer carrying the winner (the earliest of equally reliable
ones), or the earliest carrier's (``representative: earliest``, the ``pst-robust`` preset):
agreement in a chain cannot tell copying from being right, and the earliest carrier is the one
that worked the answer out (docs/decisions.md has the measurements).

With ``vote`` and ``reliable``, a response cut off at the token limit is the target only when
no carrier of the winning answer finished: extraction may still read its answer (the last
number), but as a target, with the end-of-sequence token training appends, it would teach the
model to stop mid-solution.

The ``gold_match`` column is an audit filled by ``audit_gold`` after aggregation, from the
dataset's gold answers; no later stage reads it (``training_view`` drops it).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pst_core.answers import group_answers, is_equivalent, matches_gold
from pst_core.reliability import Candidate, answer_posteriors
from pst_core.schemas import (
    AGGREGATES_SCHEMA,
    REJECTED_SCHEMA,
)

METHODS = ("vote", "last", "reliable")
# Which response carrying the winning answer becomes the target, per rule; the first is its default.
REPRESENTATIVES = {"vote": ("latest", "earliest"), "reliable": ("reliable", "earliest")}


def aggregate_responses(
    responses: pa.Table,
    method: str = "vote",
    representative: str | None = None,
    reliability: pa.Table | None = None,
    min_share: float = 0.0,
) -> tuple[pa.Table, pa.Table]:
    """Aggregate a round's responses per question.

    Args:
        responses: a ``RESPONSES_SCHEMA`` table (one response per peer and question).
        method: ``vote``, ``last`` or ``reliable``.
        representative: which response carrying the winning answer becomes the target: for
            ``vote`` the ``latest`` (default) or ``earliest``; for ``reliable`` the most
            ``reliable`` carrier's (default) or the ``earliest``.
        reliability: for ``reliable`` (required there), a ``RELIABILITY_SCHEMA`` table of the
            same peers, e.g. ``estimate_reliability(responses)``.
        min_share: for ``reliable``, the least posterior the winning answer needs; questions
            below it are rejected with the share in the reason.

    Returns:
        (aggregates, rejected): ``AGGREGATES_SCHEMA`` with ``gold_match`` null, and
        ``REJECTED_SCHEMA`` rows for questions without an extractable aggregate answer (or, for
        ``reliable``, with too small a winning share).
    """
    if method not in METHODS:
        raise ValueError(f"aggregate method must be one of {METHODS}, got {method!r}")
    offered = REPRESENTATIVES.get(method, (None,))
    if representative is not None and method in REPRESENTATIVES and representative not in offered:
        raise ValueError(f"representative {representative!r} is not offered with aggregate "
                         f"method {method!r}: one of {offered}")
    representative = representative or offered[0]
    if method == "reliable" and reliability is None:
        raise ValueError("method 'reliable' needs the peers' reliability: pass "
                         "reliability=estimate_reliability(responses) (pst_core.reliability)")
    table_rows = responses.to_pylist()
    posteriors = answer_posteriors(responses, reliability) if method == "reliable" else {}
    by_question: dict[str, list[dict]] = {}
    for row in table_rows:
        by_question.setdefault(row["question_id"], []).append(row)
    kept, rejected = [], []
    for qid, rows in by_question.items():
        rows.sort(key=lambda r: r["position"])
        if method == "reliable":
            chosen, votes, reason = _reliable(posteriors[qid], table_rows, min_share,
                                              representative)
        elif method == "vote":
            chosen, votes = _vote(rows, representative)
            reason = "no peer answer extractable"
        else:
            chosen, votes = _last(rows)
            reason = "last peer has no answer"
        if chosen is None:
            rejected.append({"question_id": qid, "reason": reason})
            continue
        kept.append({
            "question_id": qid, "response": chosen["response"], "answer": chosen["answer"],
            "method": method, "source_peer": chosen["peer"], "votes": votes,
            "n_peers": len(rows), "agreement": votes / len(rows), "gold_match": None,
        })
    return (pa.Table.from_pylist(kept, schema=AGGREGATES_SCHEMA),
            pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))


def _reliable(
    candidates: list[Candidate], table_rows: list[dict], min_share: float, representative: str
) -> tuple[dict | None, int, str]:
    """The most probable candidate, represented by its most reliable or its earliest carrier."""
    if not candidates:
        return None, 0, "no peer answer extractable"
    best = candidates[0]
    if best.posterior < min_share:
        return None, 0, f"winning share {best.posterior:.2f} below min_share {min_share:g}"
    carriers = _finished_carriers([table_rows[i] for i in best.rows])  # most reliable first
    chosen = carriers[0] if representative == "reliable" else min(
        carriers, key=lambda r: r["position"])
    return chosen, len(best.rows), ""


def _vote(rows: list[dict], representative: str) -> tuple[dict | None, int]:
    """Majority answer; ties to the group whose latest member answered last."""
    groups = [[rows[i] for i in g] for g in group_answers([r["answer"] for r in rows])]
    if not groups:
        return None, 0
    best = max(groups, key=lambda g: (len(g), max(r["position"] for r in g)))
    pick = max if representative == "latest" else min
    return pick(_finished_carriers(best), key=lambda r: r["position"]), len(best)


def _finished_carriers(carriers: list[dict]) -> list[dict]:
    """The carriers whose response finished (not cut off at the token limit), or all of them."""
    return [r for r in carriers if r["finish_reason"] != "length"] or carriers


def _last(rows: list[dict]) -> tuple[dict | None, int]:
    last = rows[-1]
    if last["answer"] is None:
        return None, 0
    return last, sum(is_equivalent(r["answer"], last["answer"]) for r in rows if r["answer"])


def audit_gold(aggregates: pa.Table, dataset: pa.Table, multi_answer: str = "any") -> pa.Table:
    """Fill ``gold_match`` (pseudo-label accuracy audit) from the dataset's gold answers.

    Works on any table with ``question_id``, ``answer`` and ``gold_match`` columns (aggregates,
    training targets).
    """
    gold = {r["id"]: r for r in dataset.select(["id", "answer", "all_answers"]).to_pylist()}
    matches = []
    for qid, answer in zip(aggregates.column("question_id").to_pylist(),
                           aggregates.column("answer").to_pylist()):
        g = gold.get(qid)
        has_gold = g is not None and g["answer"] is not None
        matches.append(matches_gold(answer, g["answer"], g["all_answers"], multi_answer)
                       if has_gold else None)
    index = aggregates.schema.get_field_index("gold_match")
    return aggregates.set_column(index, "gold_match", pa.array(matches, pa.bool_()))


TRAINING_COLUMNS: Sequence[str] = ("question_id", "response", "answer")


def training_view(aggregates: pa.Table) -> pa.Table:
    """The only columns later stages may read: the audit column is not among them."""
    return aggregates.select(list(TRAINING_COLUMNS))
