"""Answers to pre-registered questions (``docs/preregistration.md``) from the runs' tables.

A question compares two sides (runs chosen by experiment, method and number of rounds, one per
seed; an untrained run serves every seed) at stated rounds, on one peer and benchmark. The
estimate is the mean over seeds of the per-seed paired difference on the shared questions; the
95% interval is a hierarchical bootstrap: draw the seeds with replacement, then the questions
(one draw per replicate, shared by its seeds, since every seed answers the same questions).
With few seeds this is wide when seeds disagree, which is the point: a lead one seed shows and
another does not is not an answer. The verdict follows the interval; a question whose seeds are
not all there yet is answered as "interim".

Metrics: ``em`` pairs each question's correctness; ``gv_gap_abs`` pairs each question's gap
contribution (the self-verified pick's correctness minus its samples' mean), so the difference
is the difference of the two GV gaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError

from pst_core.compare import Run, best_decoding, mcnemar_exact
from pst_core.config import format_validation_error
from pst_core.errors import ConfigError
from pst_core.methods import REGISTRY
from pst_core.section import Section


class Side(Section):
    experiment: str
    method: str
    rounds: int | None = Field(None, description="The runs' number of rounds; null: any.")
    round: int = Field(..., ge=0, description="The round evaluated.")
    decoding: Literal["greedy", "best"] = Field(
        "greedy", description="best: an untrained run at its best swept temperature.")


class Question(Section):
    id: str
    kind: Literal["primary", "secondary", "exploratory"]
    title: str
    metric: Literal["em", "gv_gap_abs"] = "em"
    claim: Literal["greater", "less"] | None = Field(
        None, description="treatment - control > 0 (greater) or < 0 (less); null: an estimate.")
    peer: str | list[str]
    benchmark: str | list[str]
    seeds: list[int] = Field(..., min_length=1)
    treatment: Side
    control: Side | None = None


class Plan(Section):
    bootstrap: int = Field(10_000, gt=0)
    equivalence_margin: float = Field(0.03, ge=0)
    questions: list[Question]


def load_plan(path: str | Path) -> Plan:
    """Read a pre-registration's questions (YAML), with one-line errors naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Plan.model_validate(raw)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the pre-registration ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    except ValidationError as e:
        raise ConfigError(f"{path}: {format_validation_error(e)}") from None


def answer_plan(plan: Plan, runs: list[Run]) -> list[dict]:
    """One answer per question, peer and benchmark, in the plan's order."""
    out = []
    for q in plan.questions:
        for peer in [q.peer] if isinstance(q.peer, str) else q.peer:
            for benchmark in [q.benchmark] if isinstance(q.benchmark, str) else q.benchmark:
                out.append(answer_question(q, peer, benchmark, runs, plan))
    return out


def answer_question(q: Question, peer: str, benchmark: str, runs: list[Run], plan: Plan) -> dict:
    """The estimate, its interval, each seed's own difference and the verdict."""
    row = {"id": q.id, "kind": q.kind, "title": q.title, "metric": q.metric, "claim": q.claim,
           "peer": peer, "benchmark": benchmark, "seeds_planned": q.seeds, "seeds": [],
           "per_seed": [], "estimate": None, "lo": None, "hi": None, "n_questions": 0,
           "missing": []}
    outcomes = []
    for seed in q.seeds:
        sides = [(side, _select(runs, side, seed)) for side in (q.treatment, q.control) if side]
        lacking = [f"{s.method} ({s.experiment}, {_rounds(s)}seed {seed})"
                   for s, found in sides if found is None]
        scored = [] if lacking else [_outcomes(found, s, peer, benchmark, q.metric)
                                     for s, found in sides]
        lacking += [f"{s.method} ({s.experiment}, seed {seed}, round {s.round}) has no "
                    f"{q.metric} rows" for (s, _), o in zip(sides, scored) if not o]
        if lacking:
            row["missing"] += lacking
            continue
        row["seeds"].append(seed)
        outcomes.append(scored)
    if not outcomes:
        row["verdict"] = "not yet run"
        return row
    shared = sorted(set.intersection(*(set(o) for scored in outcomes for o in scored)))
    diffs = np.array([[scored[0][x] - (scored[1][x] if len(scored) > 1 else 0.0)
                       for x in shared] for scored in outcomes])
    row["n_questions"] = len(shared)
    row["estimate"] = float(diffs.mean())
    row["lo"], row["hi"] = hierarchical_interval(diffs, plan.bootstrap)
    for seed, d in zip(row["seeds"], diffs):
        lo, hi = hierarchical_interval(d[None, :], plan.bootstrap)
        p = (mcnemar_exact(int((d > 0).sum()), int((d < 0).sum()))
             if q.metric == "em" and q.control else None)
        row["per_seed"].append({"seed": seed, "delta": float(d.mean()), "lo": lo, "hi": hi,
                                "p": p})
    row["verdict"] = verdict(row, q.claim, plan.equivalence_margin)
    return row


def hierarchical_interval(diffs: np.ndarray, replicates: int, seed: int = 0
                          ) -> tuple[float, float]:
    """95% interval of the mean of ``diffs`` (seeds x questions): seeds drawn with replacement,
    then questions (one draw per replicate, shared by its seeds)."""
    rng = np.random.default_rng(seed)
    n_seeds, n_questions = diffs.shape
    questions = rng.integers(0, n_questions, size=(replicates, n_questions))
    per_seed = diffs[:, questions].mean(axis=2)  # seeds x replicates
    seeds = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    boot = per_seed[seeds, np.arange(replicates)[:, None]].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def verdict(row: dict, claim: str | None, margin: float) -> str:
    """supported / contradicted / inconclusive from the interval ("interim" until every
    planned seed is there)."""
    lo, hi = row["lo"], row["hi"]
    if claim is None:
        text = "estimate"
    elif (claim == "greater" and lo > 0) or (claim == "less" and hi < 0):
        text = "supported"
    elif (claim == "greater" and hi < 0) or (claim == "less" and lo > 0):
        text = "contradicted"
    elif -margin <= lo and hi <= margin:
        text = f"inconclusive: no difference as large as {100 * margin:.0f} points"
    else:
        text = "inconclusive"
    if row["seeds"] != row["seeds_planned"]:
        found = ", ".join(map(str, row["seeds"]))
        text = f"interim ({text}; seeds {found} of {', '.join(map(str, row['seeds_planned']))})"
    return text


def _rounds(side: Side) -> str:
    return "" if side.rounds is None else f"{side.rounds} rounds, "


def _select(runs: list[Run], side: Side, seed: int) -> Run | None:
    """The run a side names for ``seed`` (an untrained run serves every seed)."""
    trains = REGISTRY[side.method].trains if side.method in REGISTRY else True
    found = [r for r in runs if r.cfg.experiment == side.experiment and r.method == side.method
             and (side.rounds is None or r.cfg.rounds == side.rounds)
             and (not trains or r.cfg.seed == seed)]
    if len(found) > 1:
        raise ConfigError(f"{side.method} ({side.experiment}, seed {seed}): several runs match "
                          f"({', '.join(str(r.root) for r in found)}); name its rounds")
    return found[0] if found else None


def _outcomes(run: Run, side: Side, peer: str, benchmark: str, metric: str) -> dict[str, float]:
    """Question id -> its outcome on one side: correctness (em) or gap contribution."""
    rows = [x for x in run.eval if x["round"] == side.round and x["model"] == peer
            and x["benchmark"] == benchmark]
    if metric == "em":
        best = side.decoding == "best"
        kind = best_decoding(run).get((peer, benchmark), "greedy") if best else "greedy"
        return {x["question_id"]: float(x["correct"]) for x in rows if x["kind"] == kind}
    samples: dict[str, list[dict]] = {}
    for x in rows:
        if x["kind"] == "sample":
            samples.setdefault(x["question_id"], []).append(x)
    return {q: float(max(s, key=lambda x: (x["verify_score"], -x["sample"]))["correct"])
            - sum(x["correct"] for x in s) / len(s) for q, s in samples.items()}


def render_answers(answers: list[dict], plan_path: str) -> list[str]:
    """The answers as a Markdown section (a table and the questions still to run)."""
    lines = [
        "## Pre-registered questions",
        "",
        (f"Answered from the tables by `pst compare --prereg {plan_path}` as "
         "[docs/preregistration.md](preregistration.md) defines them: treatment minus control in "
         "points (GV gap: difference of absolute gaps), the mean over seeds of each seed's "
         "paired difference, with a 95% hierarchical bootstrap interval (seeds, then questions, "
         "resampled); each seed's own difference beside it, with McNemar's p. Anything else in "
         "this report is not pre-registered."),
        "",
        ("| id | kind | question | peer | benchmark | seeds | n | estimate [95% CI] | per seed "
         "| verdict |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in answers:
        estimate = "-" if a["estimate"] is None else (
            f"{_pts(a['estimate'])} [{_pts(a['lo'])}, {_pts(a['hi'])}]")
        if a["claim"] is None and a["estimate"] is not None:  # an estimate of a rate
            estimate = f"{100 * a['estimate']:.1f}% [{100 * a['lo']:.1f}, {100 * a['hi']:.1f}]"
        per_seed = "; ".join(
            f"{s['seed']}: {_pts(s['delta'])}" + ("" if s["p"] is None else f" (p {_p(s['p'])})")
            for s in a["per_seed"]) if a["claim"] else ""
        seeds = ", ".join(map(str, a["seeds"])) or "-"
        lines.append(f"| {a['id']} | {a['kind']} | {a['title']} | {a['peer']} | {a['benchmark']} "
                     f"| {seeds} | {a['n_questions'] or '-'} | {estimate} | {per_seed or '-'} "
                     f"| {a['verdict']} |")
    missing = sorted({m for a in answers for m in a["missing"]})
    if missing:
        lines += ["", "Not there yet: " + "; ".join(missing) + "."]
    return [*lines, ""]


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def _p(v: float) -> str:
    return f"{v:.3f}" if v >= 0.001 else "<0.001"
