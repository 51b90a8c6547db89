"""Peer round (DESIGN.md step 1): K peers answer each question in turn, each seeing the earlier
answers.

Peers are loaded one at a time and released before the next, so a round's peak memory is about
one peer's. Work is done position by position (everyone's first turn, then everyone's second...)
because peer k's prompt needs the responses of positions < k. Each (position, peer) slice is
written as its own Parquet part, so an interrupted round resumes at the slice it was in.

Order matters (STACK.md: Qwen-0.5B fell from 80% to 30% after seeing SmolLM2's wrong answers), so
the order is recorded per question in the ``position`` column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from pst_core.answers import is_equivalent
from pst_core.generate import RESPONSES_SCHEMA, generate_responses, generate_solo
from pst_core.models.backend import Backend, SamplingParams
from pst_core.prompts import peer_prompt
from pst_core.store import cached_stage

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
    groups: list[list[str]] = []
    for answer in answers:
        if answer is None:
            continue
        for group in groups:
            if is_equivalent(answer, group[0]):
                group.append(answer)
                break
        else:
            groups.append([answer])
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


def run_peer_round(
    questions: pa.Table,
    orders: dict[str, list[str]],
    load: LoadPeer,
    params: dict[str, SamplingParams],
    *,
    models: dict[str, str],
    prompt_formats: dict[str, str],
    rules: Sequence[str],
    parts_dir: Path,
) -> pa.Table:
    """Every question answered by every peer in its order; earlier answers shown to later peers.

    Args:
        questions: id and question only (no gold: this stage never sees it).
        orders: question id -> peer names in answering order (``order_peers``).
        load: returns a loaded backend for a peer name (with the peer's latest adapter).
        params: peer name -> its decoding parameters.
        models: peer name -> model source, recorded in the output.
        parts_dir: where the (position, peer) parts are stored for resuming.

    Returns:
        A ``RESPONSES_SCHEMA`` table ordered by position, then question order.
    """
    question_text = dict(zip(questions.column("id").to_pylist(),
                             questions.column("question").to_pylist()))
    earlier: dict[str, list[str]] = {qid: [] for qid in question_text}
    n_positions = max(len(order) for order in orders.values())
    parts: list[pa.Table] = []
    for position in range(n_positions):
        answered: list[pa.Table] = []
        for name in models:
            qids = [q for q in question_text if len(orders[q]) > position
                    and orders[q][position] == name]
            if not qids:
                continue

            def answer(qids=qids, name=name, position=position) -> pa.Table:
                backend = load(name)
                try:
                    style = backend.prompt_style(prompt_formats[name])
                    prompts = [peer_prompt(question_text[q], earlier[q], style) for q in qids]
                    log.info("position %d: %s answers %d question(s)", position, name, len(qids))
                    return generate_responses(qids, prompts, backend, params[name], peer=name,
                                              model=models[name], position=position, rules=rules)
                finally:
                    backend.close()

            answered.append(cached_stage(parts_dir / f"position{position}_{name}.parquet",
                                         RESPONSES_SCHEMA, answer))
        for part in answered:  # the next position sees this one's responses
            for qid, text in zip(part.column("question_id").to_pylist(),
                                 part.column("response").to_pylist()):
                earlier[qid].append(text)
        parts += answered
    return _in_question_order(pa.concat_tables(parts), list(question_text))


def _in_question_order(table: pa.Table, question_ids: list[str]) -> pa.Table:
    rank = {qid: i for i, qid in enumerate(question_ids)}
    rows = sorted(table.to_pylist(), key=lambda r: (r["position"], rank[r["question_id"]]))
    return pa.Table.from_pylist(rows, schema=RESPONSES_SCHEMA)

