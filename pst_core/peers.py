"""Peer round (docs/methods.md, step 1): K peers answer each question in turn, each seeing the earlier
answers.

A round is a sequence of turns: at each position (first answerer, second...), every peer answers
the questions where it has that position, seeing the responses of the earlier positions. Turns of
one position are independent (different peers, different questions: an orchestrator may run them
in parallel); positions are sequential. The caller loads one peer per turn and releases it, so a
round's peak memory is about one peer's.

Order matters (a strong peer that sees weak peers' wrong answers often adopts them), so
the order is recorded per question in the ``position`` column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pyarrow as pa

from pst_core.answers import group_answers
from pst_core.generate import generate_responses, generate_solo
from pst_core.models.backend import Backend, SamplingParams
from pst_core.prompts import peer_prompt
from pst_core.schemas import RESPONSES_SCHEMA

log = logging.getLogger(__name__)

LoadPeer = Callable[[str], Backend]


def order_peers(
    peers: Sequence[str], question_ids: Sequence[str], mode: str, round_index: int,
    ranking: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """The answering order of every question.

    Args:
        peers: peer names in config order.
        mode: ``config`` (config order), ``rotate`` (question i starts at peer
            (i + round) mod K, so each peer is sometimes last), or ``consistency`` (``ranking``).
        ranking: peers sorted most self-consistent first (``consistency`` mode).
    """
    if mode == "consistency":
        if ranking is None or sorted(ranking) != sorted(peers):
            raise ValueError("consistency order needs a ranking of exactly the configured peers")
        return {qid: list(ranking) for qid in question_ids}
    if mode == "rotate":
        k = len(peers)
        return {
            qid: [peers[(i + round_index + j) % k] for j in range(k)]
            for i, qid in enumerate(question_ids)
        }
    return {qid: list(peers) for qid in question_ids}


def majority_share(answers: Sequence[str | None]) -> float:
    """Share of samples carrying the most common (equivalence-aware) answer; None counts as none."""
    groups = group_answers(answers)
    return max((len(g) for g in groups), default=0) / max(len(answers), 1)


def rank_by_consistency(
    questions: pa.Table, peers: Sequence[str], load: LoadPeer, params: SamplingParams,
    prompt_formats: dict[str, str], rules: Sequence[str],
) -> dict[str, float]:
    """Label-free self-consistency of each peer: the mean majority share of its own samples."""
    scores = {}
    for name in peers:
        backend = load(name)
        try:
            table = generate_solo(questions, backend, params, peer=name, model=name,
                                  prompt_format=prompt_formats[name], rules=rules)
        finally:
            backend.close()
        by_question: dict[str, list] = {}
        for qid, answer in zip(table.column("question_id").to_pylist(),
                               table.column("answer").to_pylist()):
            by_question.setdefault(qid, []).append(answer)
        scores[name] = sum(map(majority_share, by_question.values())) / max(len(by_question), 1)
    return scores


def turn_questions(orders: dict[str, list[str]], position: int, peer: str) -> list[str]:
    """The questions (in order) that ``peer`` answers at ``position``."""
    return [q for q, order in orders.items() if len(order) > position and order[position] == peer]


def earlier_responses(turns: Sequence[pa.Table], question_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each question's responses from the given earlier turns, in position order."""
    earlier: dict[str, list[tuple[int, str]]] = {qid: [] for qid in question_ids}
    for table in turns:
        for qid, position, text in zip(table.column("question_id").to_pylist(),
                                       table.column("position").to_pylist(),
                                       table.column("response").to_pylist()):
            earlier[qid].append((position, text))
    return {qid: [text for _, text in sorted(items)] for qid, items in earlier.items()}


def answer_turn(
    questions: pa.Table,
    question_ids: Sequence[str],
    earlier: dict[str, list[str]],
    backend: Backend,
    params: SamplingParams,
    *,
    position: int,
    peer: str,
    model: str,
    prompt_format: str,
    rules: Sequence[str],
) -> pa.Table:
    """One peer's turn: it answers ``question_ids`` seeing each question's earlier responses.

    Args:
        questions: id and question only (no gold: this stage never sees it).
        earlier: question id -> the responses of the positions before this one.
    """
    text = dict(zip(questions.column("id").to_pylist(), questions.column("question").to_pylist()))
    style = backend.prompt_style(prompt_format)
    prompts = [peer_prompt(text[q], earlier.get(q, []), style) for q in question_ids]
    log.info("position %d: %s answers %d question(s)", position, peer, len(question_ids))
    return generate_responses(question_ids, prompts, backend, params, peer=peer, model=model,
                              position=position, rules=rules)


def combine_turns(turns: Sequence[pa.Table], question_ids: Sequence[str]) -> pa.Table:
    """All turns of a round as one table, ordered by position, then question order."""
    rank = {qid: i for i, qid in enumerate(question_ids)}
    rows = [row for table in turns for row in table.to_pylist()]
    rows.sort(key=lambda r: (r["position"], rank[r["question_id"]]))
    return pa.Table.from_pylist(rows, schema=RESPONSES_SCHEMA)
