"""PMI and weights (docs/methods.md, step 3): how much each peer's response predicts the aggregate.

PMI_k = log p_S(a* | x, y_k) - log p_S(a* | x), with S the peer itself (default) or a fixed
scorer. ``p(a* | x)`` scores the aggregate after the solo prompt; ``p(a* | x, y_k)`` after the
peer prompt that shows y_k as an earlier answer, so the only difference between the two contexts
is y_k. Log-probs are reduced per token (mean, default) or summed.

Weights: with s_k the PMI standardized over the peer's examples in the round (``standardize:
z``) or the raw PMI (``raw``), ``transform: exp`` gives w_k = clip(exp(-beta * s_k), w_min,
w_max) (our choice) and ``sigmoid`` gives w_k = 2 * sigmoid(-beta * s_k) (the third-party reading
of the paper: a sigmoid of PMI; bounded in (0, 2), so not clipped); either is then normalized to
mean 1 over the peer's examples. High PMI (the response already predicts the aggregate) gives a
small update, low PMI a large one; beta = 0 gives uniform weights. Measured here: raw mean-token
PMI had a std of 0.2, so exp(-PMI) spread weights only over 0.3-1.2; z-scores make beta
unit-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyarrow as pa

from pst_core.aggregate import training_view
from pst_core.models.backend import Backend
from pst_core.prompts import peer_prompt, solo_prompt
from pst_core.schemas import PMI_SCHEMA


def score_pmi(
    questions: pa.Table,
    responses: pa.Table,
    aggregates: pa.Table,
    load_scorer: Callable[[str], Backend],
    *,
    prompt_formats: dict[str, str],
    scorer_name: Callable[[str], str],
    reduction: str = "mean",
) -> pa.Table:
    """PMI of every peer response with its question's aggregate (weights not yet set).

    Args:
        questions: id and question.
        responses: the round's ``RESPONSES_SCHEMA`` table.
        aggregates: the round's aggregates (only ``training_view`` columns are read).
        load_scorer: peer name -> the backend that scores that peer's rows.
        prompt_formats: peer name -> prompt format of its scorer.
        scorer_name: peer name -> name recorded in the ``scorer`` column.
    """
    question_text = dict(zip(questions.column("id").to_pylist(),
                             questions.column("question").to_pylist()))
    target = {r["question_id"]: r["response"] for r in training_view(aggregates).to_pylist()}
    rows_by_peer: dict[str, list[dict]] = {}
    for row in responses.to_pylist():
        if row["question_id"] in target:
            rows_by_peer.setdefault(row["peer"], []).append(row)
    out = []
    for peer, rows in rows_by_peer.items():
        backend = load_scorer(peer)
        try:
            style = backend.prompt_style(prompt_formats[peer])
            targets = [target[r["question_id"]] for r in rows]
            texts = [question_text[r["question_id"]] for r in rows]
            cond = backend.score(
                [backend.render(peer_prompt(q, [r["response"]], style)) for q, r in zip(texts, rows)],
                targets,
            )
            uncond = backend.score([backend.render(solo_prompt(q, style)) for q in texts], targets)
        finally:
            backend.close()
        for row, c, u in zip(rows, cond, uncond):
            lc, lu = _reduce(c, reduction), _reduce(u, reduction)
            out.append({
                "question_id": row["question_id"], "peer": peer, "scorer": scorer_name(peer),
                "logp_cond": lc, "logp_uncond": lu, "n_target_tokens": c.n_tokens,
                "pmi": lc - lu, "z": 0.0, "weight": 1.0,
            })
    return pa.Table.from_pylist(out, schema=PMI_SCHEMA)


def _reduce(score, reduction: str) -> float:
    return score.logprob_mean if reduction == "mean" else score.logprob_sum


def pmi_weights(
    pmi: Sequence[float], beta: float, w_min: float, w_max: float, standardize: str = "z",
    transform: str = "exp",
) -> tuple[list[float], list[float]]:
    """(z, weights) for one peer's examples of one round.

    Example:
        >>> pmi_weights([0.0, 1.0], beta=0.0, w_min=0.2, w_max=5.0)[1]
        [1.0, 1.0]
        >>> pmi_weights([0.0, 1.0], beta=0.0, w_min=0.2, w_max=5.0, transform="sigmoid")[1]
        [1.0, 1.0]
    """
    if not pmi:
        return [], []
    mean = sum(pmi) / len(pmi)
    std = math.sqrt(sum((p - mean) ** 2 for p in pmi) / len(pmi))
    z = [(p - mean) / std if std > 0 else 0.0 for p in pmi]
    signal = z if standardize == "z" else list(pmi)
    if transform == "sigmoid":
        raw = [2.0 / (1.0 + math.exp(min(beta * s, 700.0))) for s in signal]
    else:
        raw = [min(max(math.exp(-beta * s), w_min), w_max) for s in signal]
    total = sum(raw)
    if total == 0.0:  # every sigmoid underflowed: no signal left to weigh by
        return z, [1.0] * len(raw)
    return z, [w * len(raw) / total for w in raw]


def weigh(pmi: pa.Table, beta: float, w_min: float, w_max: float, standardize: str,
          transform: str = "exp") -> pa.Table:
    """Fill ``z`` and ``weight`` per peer (the table holds one round)."""
    rows = pmi.to_pylist()
    for peer in dict.fromkeys(r["peer"] for r in rows):
        mine = [r for r in rows if r["peer"] == peer]
        z, weights = pmi_weights([r["pmi"] for r in mine], beta, w_min, w_max, standardize,
                                 transform)
        for r, zi, wi in zip(mine, z, weights):
            r["z"], r["weight"] = zi, wi
    return pa.Table.from_pylist(rows, schema=PMI_SCHEMA)
