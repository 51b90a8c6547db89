"""Do the PMI weights do what PST needs of them? An audit that trains nothing.

PST scales each learner's update by a weight from the PMI between its response and the
aggregate. Two questions a reviewer asks of those weights, answered per round and learner:

- do they put more weight on right targets than on wrong ones (the gold audit column, which
  training never reads)?
- do they merely detect copying: the learner's in-chain response equal, word for word, to the
  response of a peer that answered before it (with the strongest peer first, the learner often
  restates it, and a target it restated is one it already predicts)?

Each is an AUROC of the weight: the chance that a random target of the first kind outweighs a
random target of the other (ties count half); 0.5 is no link. ``audit_run`` reads a finished
run's tables; ``run_weight_check`` scores a fresh round of a config (its own resumable run under
``<output_dir>/weights/``, untuned peers), the mechanism check before any training.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pst_core.config import ExperimentConfig
from pst_core.errors import ConfigError
from pst_core.methods.pst import PST
from pst_core.recipes.peers import PeerTargets, generation_waves
from pst_core.runner import Runner
from pst_core.schemas import AUDIT_SCHEMA, RESPONSES_SCHEMA, TARGETS_SCHEMA
from pst_core.steps import Collect
from pst_core.store import RunLayout, read_table


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """P(a positive's score > a negative's), ties half; None without both kinds."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def audit_weights(targets: pa.Table, responses: pa.Table, round_index: int) -> list[dict]:
    """One row per learner (``AUDIT_SCHEMA``) of a round's targets and responses."""
    chain: dict[str, list[dict]] = {}
    for r in responses.to_pylist():
        chain.setdefault(r["question_id"], []).append(r)

    def copied(peer: str, question: str) -> bool:
        turns = chain.get(question, [])
        mine = [r for r in turns if r["peer"] == peer]
        return bool(mine) and any(r["position"] < mine[0]["position"]
                                  and r["response"].strip() == mine[0]["response"].strip()
                                  for r in turns)

    rows = []
    by_peer: dict[str, list[dict]] = {}
    for t in targets.to_pylist():
        by_peer.setdefault(t["peer"], []).append(t)
    for peer, mine in by_peer.items():
        audited = [t for t in mine if t["gold_match"] is not None]
        weights = [t["weight"] for t in audited]
        right = [bool(t["gold_match"]) for t in audited]
        restated = [copied(peer, t["question_id"]) for t in mine]
        rows.append({
            "round": round_index, "peer": peer, "n_targets": len(mine), "n_right": sum(right),
            "n_copied": sum(restated), "auroc_right": auroc(weights, right),
            "auroc_copied": auroc([t["weight"] for t in mine], restated),
            "weight_right": _mean([w for w, y in zip(weights, right) if y]),
            "weight_wrong": _mean([w for w, y in zip(weights, right) if not y]),
            "weight_copied": _mean([t["weight"] for t, c in zip(mine, restated) if c]),
            "weight_other": _mean([t["weight"] for t, c in zip(mine, restated) if not c])})
    return rows


def audit_run(root: str | Path) -> pa.Table:
    """Every finished round of a run (one with ``targets.parquet`` and ``responses.parquet``)."""
    layout = RunLayout(Path(root))
    rows = []
    for r, targets in layout.rounds_with("targets"):
        if layout.responses(r).exists():
            rows += audit_weights(read_table(targets, TARGETS_SCHEMA),
                                  read_table(layout.responses(r), RESPONSES_SCHEMA), r)
    return pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA)


def run_weight_check(cfg: ExperimentConfig, questions: int | None = None) -> RunLayout:
    """Round 1 of ``cfg`` up to its weighted targets, on ``questions`` pool questions (default:
    a round's), in a run of its own under ``<output_dir>/weights/``; nothing is trained."""
    if not isinstance(cfg.method, PST):
        raise ConfigError(f"pst weights needs a method with PMI weights (pst, pst-paper, "
                          f"pst-robust, pst-shuffled), got {cfg.method.name}")
    check = cfg.model_copy(update={"questions_per_round": questions or cfg.questions_per_round,
                                   "rounds": 1, "run": None,
                                   "output_dir": f"{cfg.output_dir}/weights"})
    runner = Runner(check)
    runner.setup()
    learners = check.learner_names
    waves = [*generation_waves(check, 1), [PeerTargets(round=1, peer=p) for p in learners],
             [Collect(round=1, table="targets", schema=TARGETS_SCHEMA,
                      parts=tuple(f"targets_{p}" for p in learners))]]
    for wave in waves:
        runner.run_wave(runner.ctx, wave)
    return runner.layout


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
