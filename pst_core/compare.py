"""Compare methods' runs on the same eval set: what a researcher would publish (issue 5).

For every method x peer x benchmark x round: EM and the GV gap (abs, rel), and the change in EM
against ``base`` (the untuned model at its best swept temperature) with its uncertainty from the
same questions: a paired bootstrap 95% interval of the difference and McNemar's exact test. The
form of the scored answers (mean length, share cut at ``max_new_tokens``) shows what training
did to them. On the training side: pseudo-label accuracy of each method's targets, plain and
weighted by the training weights (where the update's mass went); on the cost side: tokens
generated and wall time per run. Runs whose ``eval.initial`` is off take round 0 from the base
run (the same untuned model, decoded the same way).

Everything is read from the runs' Parquet files; nothing here touches a model.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pst_core.config import ExperimentConfig, load_recorded
from pst_core.errors import ConfigError
from pst_core.evaluate import eval_metrics
from pst_core.methods import REGISTRY
from pst_core.provenance import invocations
from pst_core.schemas import COMPARISON_SCHEMA, EVAL_SCHEMA, METRICS_SCHEMA, TARGETS_SCHEMA
from pst_core.store import RunLayout, read_table

N_BOOTSTRAP = 10_000

@dataclass
class Run:
    """One run directory: its config, evaluation rows, metrics and training targets (with their
    ``round``) of every round."""

    root: Path
    cfg: ExperimentConfig
    eval: list[dict]
    metrics: list[dict]
    targets: list[dict]

    @property
    def method(self) -> str:
        return self.cfg.method.name

    @property
    def trains(self) -> bool:
        """False for the reference run (``base``): its round 0 is every other run's."""
        return self.cfg.method.trains


def load_run(root: str | Path) -> Run:
    """Read a run directory (``runs/<experiment>/<run>``) written by ``pst run``."""
    root = Path(root)
    layout = RunLayout(root)
    if not layout.config.exists():
        raise ConfigError(f"{root}: no config.yaml, not a run directory (runs/<experiment>/<run>)")
    cfg = load_recorded(layout.config)
    rounds = [path for _, path in layout.rounds_with("eval")]
    if not rounds:
        raise ConfigError(f"{root}: no round has finished its evaluation yet")
    return Run(
        root, cfg,
        [x for p in rounds for x in read_table(p, EVAL_SCHEMA).to_pylist()],
        [m for _, p in layout.rounds_with("metrics")
         for m in read_table(p, METRICS_SCHEMA).to_pylist()],
        [t | {"round": r} for r, p in layout.rounds_with("targets")
         for t in read_table(p, TARGETS_SCHEMA).to_pylist()],
    )


def check_comparable(runs: list[Run]) -> None:
    """Refuse runs whose greedy answers were not scored on the same questions with the same judge
    and token budget, or whose trained runs differ in seed or number of rounds (the reference,
    untrained, may come from another seed). The GV gap's settings may differ between runs (a
    run may sample it at the last round only, or not at all): its table shows each run's own."""
    first = runs[0]
    same = lambda cfg: (
        [d.model_dump() for d in cfg.data.eval], cfg.answers.model_dump(),
        cfg.eval.model_dump(include={"max_new_tokens", "limit"}))
    for run in runs[1:]:
        if same(run.cfg) != same(first.cfg):
            raise ConfigError(
                f"{run.root}: not comparable with {first.root}: data.eval, answers or the eval "
                "budget differ (compare runs of one config set, e.g. data/configs/offline/)")
    trained = [r for r in runs if r.trains]
    if len({(r.cfg.seed, r.cfg.rounds) for r in trained}) > 1:
        raise ConfigError(f"{runs[0].root.parent}: trained runs of several seeds or round counts "
                          "given to one comparison: compare each apart (config_sets groups them)")
    references = {}
    for r in runs:
        if not r.trains:
            for peer in r.cfg.learner_names:
                if peer in references:
                    raise ConfigError(f"two untrained runs evaluate {peer} ({references[peer]}, "
                                      f"{r.root}): deltas need exactly one reference per peer")
                references[peer] = r.root


def config_sets(runs: list[Run]) -> list[list[Run]]:
    """The trained runs grouped by experiment, seed and number of rounds (one config set each), in
    the order first given, each with its experiment's untrained runs in front: the untuned
    model is every set's reference (a seed only draws its sampled answers). Untrained runs of an
    experiment without trained runs form a set of their own."""
    sets: dict[tuple, list[Run]] = {}
    references: dict[str, list[Run]] = {}
    for run in runs:
        if run.trains:
            sets.setdefault((run.cfg.experiment, run.cfg.seed, run.cfg.rounds), []).append(run)
        else:
            references.setdefault(run.cfg.experiment, []).append(run)
            sets.setdefault((run.cfg.experiment,), [])
    out = []
    for key, group in sets.items():
        trained_here = any(k[0] == key[0] and len(k) > 1 for k in sets)
        if len(key) == 1 and trained_here:
            continue
        out.append([*references.get(key[0], []), *group])
    return out


def set_seed(runs: list[Run]) -> int:
    """The seed of a set's trained runs (its reference's when nothing was trained)."""
    return next((r.cfg.seed for r in runs if r.trains), runs[0].cfg.seed)


def set_rounds(runs: list[Run]) -> int:
    """The number of rounds of a set's trained runs (0 when nothing was trained)."""
    return next((r.cfg.rounds for r in runs if r.trains), 0)


def reliabilities(runs: list[Run]) -> list[dict]:
    """Per run, round and peer: the label-free reliability estimate its aggregate used and its
    gold audit (runs of the PST methods; the pre-flight's numbers, on the round's questions)."""
    out = []
    for run in runs:
        found: dict[tuple[int, str], dict] = {}
        for m in run.metrics:
            if m["name"] in ("reliability_est", "agreement_rate", "reliability_gold"):
                found.setdefault((m["round"], m["peer"]), {})[m["name"]] = m["value"]
        out += [{"method": run.method, "round": r, "peer": peer, **values}
                for (r, peer), values in found.items()]  # rounds in order, peers in chain order
    return out


def paired_delta(treated: list[bool], reference: list[bool], seed: int = 0) -> tuple[float, ...]:
    """(mean difference, bootstrap 2.5%, 97.5%, McNemar exact two-sided p) for paired 0/1 outcomes."""
    a, b = np.asarray(treated, dtype=float), np.asarray(reference, dtype=float)
    diff = a - b
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(N_BOOTSTRAP, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi), mcnemar_exact(int((diff > 0).sum()),
                                                                    int((diff < 0).sum()))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p: the discordant pairs against Binomial(n, 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(runs: list[Run]) -> pa.Table:
    """The comparison table (``COMPARISON_SCHEMA``), one row per method, peer, benchmark, round."""
    check_comparable(runs)
    seed, rounds = set_seed(runs), set_rounds(runs)
    bases = {peer: r for r in runs if not r.trains for peer in r.cfg.learner_names}
    reference = {}
    for base in {id(r): r for r in bases.values()}.values():
        reference |= {key: kind for key, kind in best_decoding(base).items()
                      if bases.get(key[0]) is base}
    rows = []
    for run in runs:
        evals = run.eval
        if run.trains and not any(x["round"] == 0 for x in evals):
            evals = [x for peer in run.cfg.learner_names if peer in bases
                     for x in bases[peer].eval if x["round"] == 0 and x["model"] == peer
                     and x["kind"] in ("greedy", "sample")
                     ] + evals  # the shared round 0: the untuned model, as every run decodes it
        summary = {(m["round"], m["peer"], m["benchmark"]): m for m in _wide(eval_metrics(
            pa.Table.from_pylist(evals, schema=EVAL_SCHEMA)))}
        training = {(m["round"], m["peer"]): m for m in _wide(
            [m for m in run.metrics if m["peer"] is not None and m["benchmark"] is None])}
        for (r, peer, benchmark), m in sorted(summary.items()):
            kind = "greedy"
            if not run.trains:
                kind = reference[(peer, benchmark)]
            scored = _scored(evals, r, peer, benchmark, kind)
            row = {"experiment": run.cfg.experiment, "seed": seed, "rounds": rounds,
                   "method": run.method,
                   "run": run.root.name, "peer": peer,
                   "benchmark": benchmark, "round": r, "n_questions": int(m["n_questions"]),
                   "em": _mean([x["correct"] for x in scored]), "gv_gap_abs": m["gv_gap_abs"],
                   "gv_gap_rel": m["gv_gap_rel"], "decoding": kind,
                   "delta_em": None, "delta_lo": None, "delta_hi": None, "mcnemar_p": None,
                   "mean_tokens": _mean([x["n_tokens"] for x in scored]),
                   "truncated": _mean([x["finish_reason"] == "length" for x in scored]),
                   "n_targets": training.get((r, peer), {}).get("n_targets"),
                   "pseudo_label_acc": training.get((r, peer), {}).get("pseudo_label_acc"),
                   "weighted_label_acc": weighted_label_acc(
                       [t for t in run.targets if t["round"] == r and t["peer"] == peer])}
            if (peer, benchmark) in reference:
                paired = _paired(scored, _scored(bases[peer].eval, 0, peer, benchmark,
                                                 reference[(peer, benchmark)]))
                if paired:
                    row |= paired[1]
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)


def pairwise(runs: list[Run]) -> list[dict]:
    """EM differences between every two trained methods at their last round, per peer and
    benchmark, paired on the same questions: the ablations (``pst`` against ``pst-uniform``
    isolates the PMI weights). ``delta_em`` is ``method`` minus ``other``; pairs follow the
    registry's order of methods."""
    trained = sorted((r for r in runs if r.trains), key=lambda r: list(REGISTRY).index(r.method))
    last = {run.root: _last_rounds(run) for run in trained}
    out = []
    for a, b in itertools.combinations(trained, 2):
        last_a, last_b = last[a.root], last[b.root]
        for peer, benchmark in sorted(last_a.keys() & last_b.keys()):
            ra, rb = last_a[(peer, benchmark)], last_b[(peer, benchmark)]
            paired = _paired(_scored(a.eval, ra, peer, benchmark, "greedy"),
                             _scored(b.eval, rb, peer, benchmark, "greedy"))
            if paired:
                out.append({"experiment": a.cfg.experiment, "seed": a.cfg.seed,
                            "rounds": a.cfg.rounds, "method": a.method, "other": b.method, "peer": peer,
                            "benchmark": benchmark, "round": ra, "other_round": rb,
                            "n_questions": paired[0], **paired[1]})
    return out


def across_seeds(rows: list[dict], pairs: list[dict], rival: str = "sept") -> list[dict]:
    """Per experiment, number of rounds, trained method, peer and benchmark run on more than one
    seed: EM at the last round of each seed, their mean and spread (max minus min), and each
    seed's paired difference against ``rival`` (None where the seed has no such run). ``rows``
    are the comparison tables' rows, ``pairs`` the ``pairwise`` differences, both of every
    seed."""
    last: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if REGISTRY[r["method"]].trains:
            key = (r["experiment"], r["rounds"], r["method"], r["peer"], r["benchmark"])
            by_seed = last.setdefault(key, {})
            if r["seed"] not in by_seed or r["round"] > by_seed[r["seed"]]["round"]:
                by_seed[r["seed"]] = r
    against = {(d["experiment"], d["rounds"], d["seed"], d["method"], d["other"], d["peer"],
                d["benchmark"]): d for d in [*pairs, *map(flipped, pairs)]}
    out = []
    for (experiment, rounds, method, peer, benchmark), by_seed in last.items():
        if len(by_seed) < 2:
            continue
        seeds = sorted(by_seed)
        em = [by_seed[s]["em"] for s in seeds]
        out.append({
            "experiment": experiment, "method": method, "peer": peer, "benchmark": benchmark,
            "seeds": seeds, "rounds": [by_seed[s]["round"] for s in seeds], "em": em,
            "em_mean": sum(em) / len(em), "em_spread": max(em) - min(em), "rival": rival,
            "vs_rival": [against.get((experiment, rounds, s, method, rival, peer, benchmark))
                         for s in seeds]})
    return out


def flipped(d: dict) -> dict:
    """A pairwise difference read the other way round (``other`` minus ``method``)."""
    return d | {"method": d["other"], "other": d["method"], "delta_em": -d["delta_em"],
                "delta_lo": -d["delta_hi"], "delta_hi": -d["delta_lo"]}


# The stages a run's wall time is split into: metric ``wall_s/<stage>`` or ``wall_s/<stage>/...``
# (generation turns, evaluation per benchmark); the rest (aggregation) counts in the total only.
STAGES = ("generate", "score", "train", "eval")


def costs(runs: list[Run]) -> list[dict]:
    """Per run: training examples, tokens generated (training side, evaluation), and wall time
    in all and per stage (``wall_s_<stage>``, ``STAGES``)."""
    out = []
    for run in runs:
        overall = [m for m in run.metrics if m["benchmark"] is None]
        wall = sum(m["value"] for m in overall if m["name"].startswith("wall_s/"))
        by_stage = {f"wall_s_{stage}": sum(
            m["value"] for m in overall
            if m["name"] == f"wall_s/{stage}" or m["name"].startswith(f"wall_s/{stage}/"))
            for stage in STAGES}
        out.append({
            "method": run.method, "run": run.root.name,
            "rounds": run.cfg.rounds,
            "training_examples": sum(m["value"] for m in overall
                                     if m["name"] == "n_targets" and m["peer"] is not None),
            "train_tokens_generated": sum(m["value"] for m in overall
                                          if m["name"] == "tokens_generated" and m["peer"] is None),
            "eval_tokens_generated": sum(x["n_tokens"] for x in run.eval),
            "wall_s": wall,
            **by_stage,
            "invocations": invocations(run.root),
        })
    return out


def _last_rounds(run: Run) -> dict[tuple[str, str], int]:
    """The last evaluated round of each (peer, benchmark) of a run."""
    last: dict[tuple[str, str], int] = {}
    for x in run.eval:
        key = (x["model"], x["benchmark"])
        last[key] = max(last.get(key, x["round"]), x["round"])
    return last


def best_decoding(base: Run) -> dict[tuple[str, str], str]:
    """Base's best kind (greedy or t=<T>) per (peer, benchmark); ties go to the lower temperature."""
    best = {}
    for m in _wide(eval_metrics(pa.Table.from_pylist(base.eval, schema=EVAL_SCHEMA))):
        if m["round"] == 0:
            t = m.get("best_temperature", 0.0)
            best[(m["peer"], m["benchmark"])] = "greedy" if t == 0 else f"t={t:g}"
    return best


def weighted_label_acc(targets: list[dict]) -> float | None:
    """Share of the training weight on targets whose answer matches the gold (the audit column;
    None without targets or gold). Equals pseudo-label accuracy when every weight is 1."""
    audited = [t for t in targets if t["gold_match"] is not None]
    total = sum(t["weight"] for t in audited)
    return sum(t["weight"] for t in audited if t["gold_match"]) / total if total else None


def _paired(mine: list[dict], theirs: list[dict]) -> tuple[int, dict] | None:
    """(questions shared, {delta_em, delta_lo, delta_hi, mcnemar_p}) of two sets of scored
    responses, paired by question; None when they share no question."""
    a = {x["question_id"]: x["correct"] for x in mine}
    b = {x["question_id"]: x["correct"] for x in theirs}
    shared = sorted(a.keys() & b.keys())
    if not shared:
        return None
    delta = paired_delta([a[q] for q in shared], [b[q] for q in shared])
    return len(shared), dict(zip(("delta_em", "delta_lo", "delta_hi", "mcnemar_p"), delta))


def _scored(evals: list[dict], r: int, peer: str, benchmark: str, kind: str) -> list[dict]:
    """The responses EM is computed on: one per question, decoded as ``kind``."""
    return [x for x in evals if x["round"] == r and x["model"] == peer
            and x["benchmark"] == benchmark and x["kind"] == kind]


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else math.nan


def _wide(long_rows: list[dict]) -> list[dict]:
    """Long (round, peer, benchmark, name, value) rows -> one dict per key with the names."""
    out: dict[tuple, dict] = {}
    for m in long_rows:
        key = (m["round"], m["peer"], m["benchmark"])
        out.setdefault(key, {"round": key[0], "peer": key[1], "benchmark": key[2]})[m["name"]] = m["value"]
    return list(out.values())
