"""Plots of a run for MLflow: EM and GV-Gap by round per peer, PMI and weight histograms.

matplotlib is imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

from pst_core.schemas import METRICS_SCHEMA, PMI_SCHEMA
from pst_core.store import RunLayout, read_table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rounds(layout: RunLayout, out_dir: Path) -> Path | None:
    """``rounds.png``: EM and GV-Gap (abs) per round, one line per peer and benchmark."""
    rows = [m for _, path in layout.rounds_with("metrics")
            for m in read_table(path, METRICS_SCHEMA).to_pylist()]
    if not rows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in ((axes[0], "em", "Exact match"), (axes[1], "gv_gap_abs", "GV-Gap (abs)")):
        series: dict[str, list[tuple[int, float]]] = {}
        for m in rows:
            if m["name"] == metric and m["benchmark"] is not None:
                series.setdefault(f"{m['peer']} / {m['benchmark']}", []).append((m["round"], m["value"]))
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "rounds.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pmi(layout: RunLayout, r: int, out_dir: Path) -> list[Path]:
    """``round_<r>_pmi.png`` and ``round_<r>_weights.png``: histograms per peer."""
    if r == 0 or not layout.pmi(r).exists():
        return []
    rows = read_table(layout.pmi(r), PMI_SCHEMA).to_pylist()
    plt = _pyplot()
    paths = []
    for column, title in (("pmi", "PMI"), ("weight", "weight")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for peer in sorted({x["peer"] for x in rows}):
            ax.hist([x[column] for x in rows if x["peer"] == peer], bins=20, alpha=0.5, label=peer)
        ax.set_title(f"Round {r}: {title} per peer")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"round_{r}_{column}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
