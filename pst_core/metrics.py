"""Round metrics, in long form (round, peer, benchmark, name, value), from a round's tables.

Evaluation gives EM and the GV gap per peer and benchmark (and EM per swept temperature for
``base``); the training side gives the number of targets and their pseudo-label accuracy (the
gold audit), agreement (PST), each peer's label-free reliability estimate (and its audited
accuracy), PMI and weight spread, losses and tokens; every stage that ran
records its wall time (``wall_s/<stage>``) and peak resident memory in GiB (``rss_gb/<stage>``;
timing files written before it was recorded have only the wall time).
"""

from __future__ import annotations

import json

import pyarrow as pa

from pst_core.evaluate import eval_metrics
from pst_core.schemas import (
    AGGREGATES_SCHEMA,
    EVAL_SCHEMA,
    METRICS_SCHEMA,
    PMI_SCHEMA,
    REJECTED_SCHEMA,
    RELIABILITY_SCHEMA,
    RESPONSES_SCHEMA,
    TARGETS_SCHEMA,
    TRAIN_LOG_SCHEMA,
)
from pst_core.store import RunLayout, read_table


def round_metrics(layout: RunLayout, r: int, peers: list[str]) -> pa.Table:
    """All of round r's metrics as a ``METRICS_SCHEMA`` table."""
    rows = eval_metrics(read_table(layout.eval(r), EVAL_SCHEMA))

    def add(name: str, value: float, peer: str | None = None) -> None:
        rows.append({"round": r, "peer": peer, "benchmark": None, "name": name, "value": value})

    if r > 0:
        responses = read_table(layout.responses(r), RESPONSES_SCHEMA).to_pylist()
        targets = read_table(layout.targets(r), TARGETS_SCHEMA).to_pylist()
        train_log = read_table(layout.train_log(r), TRAIN_LOG_SCHEMA).to_pylist()
        add("n_questions", float(len({x["question_id"] for x in responses})))
        add("tokens_generated", float(sum(x["n_tokens"] for x in responses)))
        add("pseudo_label_acc", _audited(targets))
        if layout.aggregates(r).exists():  # the PST family
            aggregates = read_table(layout.aggregates(r), AGGREGATES_SCHEMA).to_pylist()
            rejected = read_table(layout.rejected(r), REJECTED_SCHEMA)
            add("n_aggregated", float(len(aggregates)))
            add("n_rejected", float(rejected.num_rows))
            add("agreement", _mean([a["agreement"] for a in aggregates]))
        pmi = read_table(layout.pmi(r), PMI_SCHEMA).to_pylist() if layout.pmi(r).exists() else []
        reliability = layout.peers(r)
        for row in (read_table(reliability, RELIABILITY_SCHEMA).to_pylist()
                    if reliability.exists() else []):
            add("reliability_est", row["estimated_accuracy"], row["peer"])
            add("agreement_rate", row["agreement"], row["peer"])
            if row["gold_accuracy"] is not None:  # the audit: never read by training
                add("reliability_gold", row["gold_accuracy"], row["peer"])
        for name in peers:
            mine = [x for x in responses if x["peer"] == name]
            own_targets = [t for t in targets if t["peer"] == name]
            weights = [t["weight"] for t in own_targets]
            losses = [t["loss"] for t in train_log if t["peer"] == name]
            add("answer_rate", _mean([x["answer"] is not None for x in mine]), name)
            add("tokens_generated", float(sum(x["n_tokens"] for x in mine)), name)
            add("n_targets", float(len(own_targets)), name)
            add("pseudo_label_acc", _audited(own_targets), name)
            add("weight_std", _std(weights), name)
            add("weight_max", max(weights, default=float("nan")), name)
            add("train_loss_first", losses[0] if losses else float("nan"), name)
            add("train_loss_last", losses[-1] if losses else float("nan"), name)
            if pmi:
                add("mean_pmi", _mean([p["pmi"] for p in pmi if p["peer"] == name]), name)
    for path in sorted(layout.timings(r).glob("*.json")):
        record = json.loads(path.read_text())
        add(f"wall_s/{record['stage']}", record["wall_s"], record["peer"])
        if "rss_gb" in record:
            add(f"rss_gb/{record['stage']}", record["rss_gb"], record["peer"])
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)


def run_metrics(layout: RunLayout, rounds: int) -> list[dict]:
    """Every metrics row of rounds 0..rounds that have a metrics file, in round order."""
    return [m for r in range(rounds + 1) if layout.metrics(r).exists()
            for m in read_table(layout.metrics(r), METRICS_SCHEMA).to_pylist()]


def summary(layout: RunLayout, rounds: int) -> list[dict]:
    """Per round, peer and benchmark: EM and the GV gap, from the rounds' metrics files."""
    out: dict[tuple, dict] = {}
    for m in run_metrics(layout, rounds):
        if m["benchmark"] is not None:
            key = (m["round"], m["peer"], m["benchmark"])
            out.setdefault(key, {"round": key[0], "peer": key[1], "benchmark": key[2]})
            out[key][m["name"]] = m["value"]
    return list(out.values())


def _audited(targets: list[dict]) -> float:
    """Share of targets whose answer matches the gold (pseudo-label accuracy; NaN without gold)."""
    return _mean([t["gold_match"] for t in targets if t["gold_match"] is not None])


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _std(values) -> float:
    values = list(values)
    if not values:
        return float("nan")
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
