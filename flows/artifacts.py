"""A Prefect table artifact per round: EM, GV gap and pseudo-label accuracy by peer and benchmark.

The table shows on the flow run's Artifacts tab as each round finishes, and under its key on
the Artifacts page (one key per run and round, so a rerun adds a version). It is read from the
round's ``metrics.parquet`` after the round wrote it (``pst_core.metrics.round_metrics``), like
MLflow tracking: ``PrefectArtifacts`` is a ``pst_core.tracking.Tracker``, to combine with
``MlflowTracker`` through ``pst_core.tracking.Trackers``.
"""

from __future__ import annotations

import math
import re
from uuid import UUID

from prefect.artifacts import create_table_artifact

from pst_core.schemas import METRICS_SCHEMA
from pst_core.store import RunLayout, read_table

# Column -> (metric name, scale): percentages, or percentage points for the absolute gap.
COLUMNS = {
    "EM (%)": ("em", 100),
    "GV-gap abs (pts)": ("gv_gap_abs", 100),
    "GV-gap rel (%)": ("gv_gap_rel", 100),
}


def round_table(layout: RunLayout, round_index: int) -> list[dict]:
    """One row per peer and benchmark of round r: EM, GV gap, and the peer's pseudo-label accuracy.

    Values are rounded to 0.1; a metric that is missing or NaN is None (an untrained round 0
    has no pseudo-label accuracy; the relative gap is NaN when every sample was right).
    """
    metrics = read_table(layout.metrics(round_index), METRICS_SCHEMA).to_pylist()
    value = {(m["peer"], m["benchmark"], m["name"]): m["value"] for m in metrics}
    cells = sorted({(m["peer"], m["benchmark"]) for m in metrics
                    if m["peer"] is not None and m["benchmark"] is not None})
    return [
        {"round": round_index, "peer": peer, "benchmark": benchmark}
        | {column: _scaled(value.get((peer, benchmark, name)), scale)
           for column, (name, scale) in COLUMNS.items()}
        | {"pseudo-label acc (%)": _scaled(value.get((peer, None, "pseudo_label_acc")), 100)}
        for peer, benchmark in cells
    ]


def artifact_key(layout: RunLayout, round_index: int) -> str:
    """``pst-<experiment>-<run>-round-<r>`` in the characters Prefect allows in a key
    (lowercase letters, digits and dashes; ``prefect.types.names``)."""
    raw = f"pst-{layout.root.parent.name}-{layout.root.name}-round-{round_index}"
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")


def publish_round_artifact(layout: RunLayout, round_index: int) -> UUID:
    """Create round r's table artifact (linked to the current flow or task run, if any)."""
    return create_table_artifact(
        key=artifact_key(layout, round_index),
        table=round_table(layout, round_index),
        description=(
            f"Round {round_index} of `{layout.root}`. EM: exact match of the greedy answer. "
            "GV gap: accuracy of the self-verified pick among sampled answers minus their mean "
            "accuracy (rel: divided by the headroom). Pseudo-label acc.: share of the peer's "
            "training targets whose answer matches the gold (an audit; gold never trains)."
        ),
    )


class PrefectArtifacts:
    """A ``Tracker`` that publishes each round's table as a Prefect artifact."""

    def log_round(self, layout: RunLayout, round_index: int) -> None:
        publish_round_artifact(layout, round_index)

    def close(self) -> None:
        return None


def _scaled(value: float | None, scale: float) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(scale * value, 1)
