"""Training targets per method: what each model is fine-tuned on in a round, with what weight.

Every method ends a round the same way (weighted SFT on (solo prompt(x) -> target), then the
same evaluation), so methods differ only in how targets are chosen, all without gold answers:

- ``pst``: the aggregate a* for every question, weighted by the peer's PMI weight (or, with
  ``target: own``, the peer's own response in the chain, as the paper's reading has it).
- ``pst-uniform``: the same targets with weight 1 (the ablation that isolates the PMI weights).
- ``sept`` (SePT): each model's own low-temperature response, unweighted, unfiltered.
- ``majority`` (LMSI / SRT style): each model's samples that carry its own majority answer,
  for questions where that answer's share reaches ``min_agreement``.
- ``distill``: one teacher peer's own answers (finished, with an answer), weight 1.

The ``gold_match`` column is the pseudo-label audit (filled by ``audit_gold`` afterwards), never
read by training.
"""

from __future__ import annotations

import pyarrow as pa

from pst_core.aggregate import training_view
from pst_core.answers import group_answers
from pst_core.schemas import RESPONSES_SCHEMA, TARGETS_SCHEMA


def aggregate_targets(aggregates: pa.Table, peer: str, weights: dict[str, float] | None) -> pa.Table:
    """PST: a* of every aggregated question; ``weights`` by question id (None: all 1)."""
    rows = [
        {"question_id": t["question_id"], "peer": peer, "response": t["response"],
         "answer": t["answer"], "weight": 1.0 if weights is None else weights[t["question_id"]],
         "gold_match": None}
        for t in training_view(aggregates).to_pylist()
        if weights is None or t["question_id"] in weights
    ]
    return pa.Table.from_pylist(rows, schema=TARGETS_SCHEMA)


def own_targets(responses: pa.Table, peer: str, weights: dict[str, float] | None = None
                ) -> pa.Table:
    """The model's own responses: all with weight 1 (SePT), or those of the questions in
    ``weights`` with their weight (PST with ``target: own``, each peer on its own turn)."""
    rows = [
        {"question_id": r["question_id"], "peer": peer, "response": r["response"],
         "answer": r["answer"], "weight": 1.0 if weights is None else weights[r["question_id"]],
         "gold_match": None}
        for r in responses.to_pylist()
        if weights is None or r["question_id"] in weights
    ]
    return pa.Table.from_pylist(rows, schema=TARGETS_SCHEMA)


def teacher_targets(responses: pa.Table, peer: str) -> pa.Table:
    """Distill: the teacher's responses that give an answer and finished (a response cut off at
    the token limit would teach stopping mid-solution, as PST's aggregate avoids)."""
    usable = [r for r in responses.to_pylist()
              if r["answer"] is not None and r["finish_reason"] != "length"]
    return own_targets(pa.Table.from_pylist(usable, schema=RESPONSES_SCHEMA), peer)


def majority_targets(
    responses: pa.Table, peer: str, min_agreement: float, per_question: int
) -> pa.Table:
    """Majority: per question, up to ``per_question`` samples carrying the majority answer;
    questions whose majority share is below ``min_agreement`` get no target."""
    by_question: dict[str, list[dict]] = {}
    for r in responses.to_pylist():
        by_question.setdefault(r["question_id"], []).append(r)
    rows = []
    for qid, samples in by_question.items():
        samples.sort(key=lambda r: r["sample"])
        groups = group_answers([s["answer"] for s in samples])
        best = max(groups, key=len, default=[])  # ties: the answer that appeared first
        if not best or len(best) / len(samples) < min_agreement:
            continue
        for i in best[:per_question]:
            rows.append({"question_id": qid, "peer": peer, "response": samples[i]["response"],
                         "answer": samples[i]["answer"], "weight": 1.0, "gold_match": None})
    return pa.Table.from_pylist(rows, schema=TARGETS_SCHEMA)
