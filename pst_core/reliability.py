"""Label-free peer reliability (docs/methods.md, pst-robust): how often each peer is right,
estimated from the peers' answers alone, and the posterior of each candidate answer.

Why: ``vote`` treats all peers alike and gives ties to the later peer. Measured: with two peers
far weaker than the learner, those ties went to the weakest peer and PST fell below the untuned
learner. Weighing peers by estimated accuracy lets one strong peer prevail over weak ones.

- ``agreement``: accuracy ~ agreement rate, the mean share of the other peers whose answer is
  equivalent to the peer's own. Crude: it mixes in the others' accuracy and rewards copying.
- ``dawid-skene`` (default): one-coin Dawid-Skene EM (Dawid & Skene 1979). Peer k is right with
  probability p_k, else gives one of the m - 1 other answers uniformly. A question's states are
  its G equivalence groups of answers and "none of these", which stands for the m - G answers
  nobody gave; the prior is uniform over the m answers. So P(truth = a | answers) ~
  prod_k [p_k if y_k = a else (1 - p_k) / (m - 1)], and "none" gets (m - G) prod_k (1 - p_k) /
  (m - 1). m = max(ANSWER_SPACE, G + 1) with ANSWER_SPACE = 31, as wrong answers to a math
  question seldom coincide. In simulation, m = G + 1 made a peer below 1/m (20% with m = 4)
  evidence against its own answer and ranked peers right 80/20/50% of the time 0.39/0.02/0.73;
  "none" weighed as one state made every estimate overconfident (0.99 for an 80% peer).
  A missing answer is a wrong one whose value is unseen: its factor (1 - p_k) is the same in
  every state, so it moves no posterior, and the M-step counts it as wrong, so p_k estimates the
  share of questions the peer answered right (what ``gold_accuracy`` measures). M-step: p_k =
  (expected right answers + 1) / (questions + 2) (a Beta(1, 1) prior), clipped to [0.01, 0.99].
  EM starts from a moment estimate on pairwise agreement (``_moment_estimate``; started from the
  agreement rate it sometimes settled on a weak peer beside a strong one), visits questions in
  sorted order and runs a fixed number of iterations: the result is deterministic. With two
  peers the data are symmetric, and so are the estimates: ranking needs three peers or more.

Gold answers are read only by ``audit_reliability``, which fills the audit column
``gold_accuracy`` from the dataset, as ``aggregate.audit_gold`` does for aggregates.
"""

from __future__ import annotations

from itertools import combinations
from math import prod
from typing import NamedTuple

import pyarrow as pa

from pst_core.answers import group_answers, matches_gold
from pst_core.schemas import RELIABILITY_SCHEMA

METHODS = ("agreement", "dawid-skene")
ANSWER_SPACE = 31  # m, at least: a wrong answer is one of m - 1 others
_P_MIN, _P_MAX = 0.01, 0.99


class Candidate(NamedTuple):
    """One candidate answer of a question (an equivalence group of the peers' answers).

    ``answer`` is the answer of ``rows[0]``; ``rows`` are row indices into the responses table,
    most reliable carrier first (ties: earlier position first).
    """

    answer: str
    posterior: float
    rows: tuple[int, ...]


class _Question(NamedTuple):
    rows: list[int]  # response row indices, in chain order
    peers: list[str]  # the peer of each row
    labels: list[int | None]  # each row's group index; None when no answer was extracted
    n_groups: int


def estimate_reliability(
    responses: pa.Table, method: str = "dawid-skene", iterations: int = 50
) -> pa.Table:
    """Estimate each peer's accuracy over one round's answers, without gold answers.

    Args:
        responses: a ``RESPONSES_SCHEMA`` table with one response per peer and question.
        method: ``dawid-skene`` (EM, the default) or ``agreement`` (the agreement rate).
        iterations: EM iterations for ``dawid-skene``.

    Returns:
        A ``RELIABILITY_SCHEMA`` table, one row per peer in chain order, ``gold_accuracy`` null.
    """
    if method not in METHODS:
        raise ValueError(f"reliability method must be one of {METHODS}, got {method!r}")
    questions = _questions(responses)
    peers = _peers_in_order(responses)
    if len(peers) < 2:
        raise ValueError(f"reliability compares peers and needs at least 2, got {peers}; "
                         "use the 'vote' or 'last' aggregate with a single peer")
    n, answered = dict.fromkeys(peers, 0), dict.fromkeys(peers, 0)
    for q in questions.values():
        for k, label in zip(q.peers, q.labels):
            n[k] += 1
            answered[k] += label is not None
    agreement = _agreement(questions, peers)
    if method == "agreement":
        p = agreement
    else:
        start = _moment_estimate(questions, peers) if len(peers) > 2 else agreement
        p = _dawid_skene(questions, n, start, iterations)
    rows = [{"peer": k, "estimated_accuracy": p[k], "agreement": agreement[k],
             "answer_rate": answered[k] / n[k], "n_questions": n[k], "gold_accuracy": None}
            for k in peers]
    return pa.Table.from_pylist(rows, schema=RELIABILITY_SCHEMA)


def answer_posteriors(responses: pa.Table, reliability: pa.Table) -> dict[str, list[Candidate]]:
    """The posterior of each candidate answer per question, under the one-coin model.

    Why: the ``reliable`` aggregate picks the answer most likely true given who said what, not
    the one most peers said. Accuracies are ``estimated_accuracy`` clipped to [0.01, 0.99]; a
    question's posteriors sum to 1 minus that of "none of these".

    Returns:
        question_id -> candidates, best first: highest posterior (compared to 12 decimals), then
        the most reliable carrier, then the latest carrier. An empty list when no peer answered.
    """
    p = {k: _clip(a) for k, a in zip(reliability.column("peer").to_pylist(),
                                      reliability.column("estimated_accuracy").to_pylist())}
    unknown = sorted(set(responses.column("peer").to_pylist()) - set(p))
    if unknown:
        raise ValueError(f"no reliability for peers {unknown}; estimate it on the same responses "
                         "(estimate_reliability) before aggregating")
    positions = responses.column("position").to_pylist()
    answers = responses.column("answer").to_pylist()
    out = {}
    for qid, q in _questions(responses).items():
        posterior = _posteriors(q, p)
        candidates = []
        for g, share in enumerate(posterior):
            carriers = [(p[k], positions[i], i)
                        for i, k, label in zip(q.rows, q.peers, q.labels) if label == g]
            # Most reliable first; equally reliable carriers: the EARLIER one, the response that
            # worked the answer out rather than a later peer's restatement of it (measured on the
            # demo: SmolLM2 copied Qwen's answers, both were rated 0.9, and the later carrier's
            # one-line restatements as targets took Qwen from 4/4 to 0/4 in one round).
            rows = tuple(i for *_, i in sorted(carriers, key=lambda c: (-c[0], c[1])))
            candidates.append((round(share, 12), max(carriers)[0], max(c[1] for c in carriers),
                               Candidate(answers[rows[0]], share, rows)))
        out[qid] = [c[-1] for c in sorted(candidates, key=lambda c: c[:3], reverse=True)]
    return out


def audit_reliability(
    reliability: pa.Table, responses: pa.Table, dataset: pa.Table, multi_answer: str = "any"
) -> pa.Table:
    """Fill ``gold_accuracy``: the share of each peer's gold-labelled questions it answered right.

    An audit of the label-free estimate, kept apart so that no estimate can read gold answers.
    Null for a peer without any gold-labelled question; every other column is left unchanged.
    """
    gold = {r["id"]: r for r in dataset.select(["id", "answer", "all_answers"]).to_pylist()}
    right: dict[str, list[bool]] = {}
    for row in responses.select(["question_id", "peer", "answer"]).to_pylist():
        g = gold.get(row["question_id"])
        if g is not None and g["answer"] is not None:
            right.setdefault(row["peer"], []).append(
                matches_gold(row["answer"], g["answer"], g["all_answers"], multi_answer))
    accuracy = [sum(right[k]) / len(right[k]) if k in right else None
                for k in reliability.column("peer").to_pylist()]
    index = reliability.schema.get_field_index("gold_accuracy")
    return reliability.set_column(index, "gold_accuracy", pa.array(accuracy, pa.float64()))


def _questions(responses: pa.Table) -> dict[str, _Question]:
    """Rows per question (sorted by question id), in chain order, with their answer groups."""
    qids, peers, positions, answers = (responses.column(c).to_pylist()
                                       for c in ("question_id", "peer", "position", "answer"))
    by_question: dict[str, list[int]] = {}
    for i, qid in enumerate(qids):
        by_question.setdefault(qid, []).append(i)
    out = {}
    for qid in sorted(by_question):
        rows = sorted(by_question[qid], key=lambda i: (positions[i], peers[i]))
        names = [peers[i] for i in rows]
        if len(set(names)) < len(names):
            raise ValueError(f"question {qid!r} has several responses from one peer ({names}); "
                             "reliability expects one per peer and question (keep sample 0)")
        groups = group_answers([answers[i] for i in rows])
        labels = [next((g for g, group in enumerate(groups) if j in group), None)
                  for j in range(len(rows))]
        out[qid] = _Question(rows, names, labels, len(groups))
    return out


def _peers_in_order(responses: pa.Table) -> list[str]:
    first: dict[str, int] = {}
    for k, pos in zip(responses.column("peer").to_pylist(),
                      responses.column("position").to_pylist()):
        first[k] = min(pos, first.get(k, pos))
    return sorted(first, key=lambda k: (first[k], k))


def _agreement(questions: dict[str, _Question], peers: list[str]) -> dict[str, float]:
    """Mean over questions of the share of the other peers whose answer is equivalent; a missing
    answer disagrees with all, and a question the peer answers alone is not counted."""
    shares: dict[str, list[float]] = {k: [] for k in peers}
    for q in questions.values():
        for k, label in zip(q.peers, q.labels):
            if len(q.peers) > 1:
                same = q.labels.count(label) - 1 if label is not None else 0
                shares[k].append(same / (len(q.peers) - 1))
    return {k: sum(s) / len(s) if s else 0.0 for k, s in shares.items()}


def _moment_estimate(questions: dict[str, _Question], peers: list[str]) -> dict[str, float]:
    """EM's start: if peers err independently and two wrong answers seldom coincide, the rate at
    which peers i and j agree is a_ij ~ p_i p_j, so p_i ~ sqrt(a_ij a_ik / a_jk), averaged over
    the pairs (j, k) of other peers (three peers at least). Rates are add-half smoothed, so a
    pair that never agrees divides by no zero; a missing answer agrees with nothing."""
    counts: dict[frozenset[str], list[int]] = {}
    for q in questions.values():
        for (i, a), (j, b) in combinations(zip(q.peers, q.labels), 2):
            agreed_seen = counts.setdefault(frozenset((i, j)), [0, 0])
            agreed_seen[0] += a is not None and a == b
            agreed_seen[1] += 1

    def rate(i: str, j: str) -> float:
        agreed, seen = counts.get(frozenset((i, j)), (0, 0))
        return (agreed + 0.5) / (seen + 1)

    out = {}
    for i in peers:
        pairs = list(combinations([k for k in peers if k != i], 2))
        out[i] = sum((rate(i, j) * rate(i, k) / rate(j, k)) ** 0.5 for j, k in pairs) / len(pairs)
    return out


def _dawid_skene(
    questions: dict[str, _Question], n: dict[str, int], start: dict[str, float], iterations: int
) -> dict[str, float]:
    """One-coin EM: E-step posteriors per question, M-step smoothed expected accuracy."""
    p = {k: _clip(a) for k, a in start.items()}
    for _ in range(iterations):
        right = dict.fromkeys(p, 0.0)
        for q in questions.values():
            posterior = _posteriors(q, p)
            for k, label in zip(q.peers, q.labels):
                right[k] += posterior[label] if label is not None else 0.0
        p = {k: _clip((right[k] + 1) / (n[k] + 2)) for k in p}
    return p


def _posteriors(q: _Question, p: dict[str, float]) -> list[float]:
    """P(truth = group g | answers) for each group; the rest is "none of these"."""
    if q.n_groups == 0:
        return []
    m = max(ANSWER_SPACE, q.n_groups + 1)
    answering = [(p[k], label) for k, label in zip(q.peers, q.labels) if label is not None]
    likelihood = [prod(pk if label == g else (1 - pk) / (m - 1) for pk, label in answering)
                  for g in range(q.n_groups)]
    none = (m - q.n_groups) * prod((1 - pk) / (m - 1) for pk, _ in answering)
    total = sum(likelihood) + none
    return [x / total for x in likelihood]


def _clip(x: float) -> float:
    return min(_P_MAX, max(_P_MIN, x))
