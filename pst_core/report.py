"""The comparison as files: a CSV of the table, a plot of EM by round, and a Markdown report
(docs/RESULTS.md) whose every number comes from the runs, including the sentences that read it.

Hand-written context (what the result means beyond the numbers) comes from a notes file that
is inserted verbatim, so the generated part can be regenerated at any time. ``publish`` also logs
the comparison as one MLflow run (``log_comparison``), a copy: the files are the record.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import shlex
from pathlib import Path

import pyarrow as pa

from pst_core.compare import (
    STAGES,
    Run,
    across_seeds,
    compare,
    config_sets,
    costs,
    flipped,
    load_run,
    pairwise,
    reliabilities,
    set_rounds,
    set_seed,
)
from pst_core.methods import REGISTRY
from pst_core.methods.pst import PST
from pst_core.pmi_audit import audit_run
from pst_core.prereg import answer_plan, load_plan, render_answers
from pst_core.store import atomic_path
from pst_core.tracking import default_tracking_uri, get_or_create_experiment, mlflow_client

log = logging.getLogger(__name__)


def publish(
    run_dirs: list[str | Path], out: str | Path, notes: str | Path | None = None,
    track: bool = True, prereg: str | Path | None = None,
) -> dict[str, Path]:
    """Compare the runs and write the report files (and log them to MLflow when ``track``);
    ``prereg``: a pre-registration's questions (``pst_core.prereg``), answered first.

    MLflow holds a copy: its failure is logged as a warning, the files are complete anyway.
    """
    plan = load_plan(prereg) if prereg else None
    runs = [load_run(d) for d in run_dirs]
    out, notes = Path(out), Path(notes) if notes else None
    command = shlex.join(["pst", "compare", *map(str, run_dirs), "--out", str(out),
                          *(["--notes", str(notes)] if notes else []),
                          *(["--prereg", str(prereg)] if prereg else [])])
    sets = [(group, compare(group)) for group in config_sets(runs)]
    answers = render_answers(answer_plan(plan, runs), str(prereg)) if plan else None
    files = write_report(sets, out, command, notes, answers)
    if track:
        for group, table in sets:
            try:
                log_comparison(group, table, files)
            except Exception as e:  # noqa: BLE001 - any tracking failure leaves the files intact
                log.warning("MLflow logging of the comparison failed (%s); the report is complete", e)
    return files


def log_comparison(
    runs: list[Run], table: pa.Table, files: dict[str, Path], tracking_uri: str | None = None
) -> str:
    """Log a comparison as one MLflow run (tag ``pst.kind=comparison``) in the runs' experiment.

    Params name the compared run directories and the seed; metrics are
    ``<name>/<method>/<peer>/<benchmark>`` with the round as step (EM, delta vs base and its
    interval, GV gap), and ``<name>/<method>-vs-<other>/<peer>/<benchmark>`` for the paired
    differences between trained methods; the report, its CSV and plot are artifacts. Returns the
    MLflow run id.
    """
    first = runs[0].cfg
    client = mlflow_client(tracking_uri or default_tracking_uri(first.output_dir))
    experiment_id = get_or_create_experiment(client, first.experiment, first.output_dir)
    methods = ", ".join(r.method for r in runs)
    run_id = client.create_run(experiment_id, run_name=f"compare: {methods}",
                               tags={"pst.kind": "comparison"}).info.run_id
    client.log_param(run_id, "seed", set_seed(runs))
    for run in runs:
        client.log_param(run_id, f"run.{run.root.name}", str(run.root.resolve()))
    for row in table.to_pylist():
        for name in ("em", "delta_em", "delta_lo", "delta_hi", "gv_gap_abs", "mean_tokens",
                     "truncated", "pseudo_label_acc", "weighted_label_acc"):
            if row[name] is not None and row[name] == row[name]:
                key = f"{name}/{row['method']}/{row['peer']}/{row['benchmark']}"
                client.log_metric(run_id, key, row[name], step=row["round"])
    for d in pairwise(runs):
        key = f"{d['method']}-vs-{d['other']}/{d['peer']}/{d['benchmark']}"
        for name in ("delta_em", "delta_lo", "delta_hi"):
            client.log_metric(run_id, f"{name}/{key}", d[name], step=d["round"])
    for path in files.values():
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def write_report(
    sets: list[tuple[list[Run], pa.Table]], out: Path, command: str, notes: Path | None = None,
    answers: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``out`` (Markdown), ``out`` with .csv (every set's rows), and an EM plot per config
    set in ``img/`` beside it: ``<stem>-em.png`` (key ``plot``) for one set, else
    ``<stem>-<experiment>-em.png`` (key ``plot <experiment>``), or
    ``<stem>-<experiment>-seed<N>-em.png`` (key ``plot <experiment> seed <N>``) where an experiment
    has several seeds."""
    paths = {"markdown": out, "csv": out.with_suffix(".csv")}
    plots = []
    for (experiment, seed, rounds), (_, table) in zip(set_names(sets), sets):
        if len(sets) == 1:
            key, stem = "plot", out.stem.lower()
        else:
            key, stem = f"plot {experiment}", f"{out.stem.lower()}-{experiment}"
            if seed is not None:
                key, stem = f"{key} seed {seed}", f"{stem}-seed{seed}"
            if rounds is not None:
                key, stem = f"{key} {rounds} rounds", f"{stem}-{rounds}r"
        paths[key] = out.parent / "img" / f"{stem}-em.png"
        plots.append(paths[key])
        plot_em(table, paths[key])
    write_csv(pa.concat_tables([table for _, table in sets]), paths["csv"])
    text = render_markdown(sets, command, paths, plots, notes.read_text() if notes else None,
                           answers)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return paths


def write_csv(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=table.column_names)
        writer.writeheader()
        writer.writerows(table.to_pylist())


def plot_em(table: pa.Table, path: Path) -> None:
    """EM (%) against round, one line per method with Wilson 95% intervals as error bars, one
    panel per peer and benchmark; base (a single evaluation) is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.to_pylist()
    panels = sorted({(r["peer"], r["benchmark"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (peer, benchmark) in zip(axes[0], panels):
        mine = [r for r in rows if (r["peer"], r["benchmark"]) == (peer, benchmark)]
        for i, method in enumerate(_methods(mine)):
            points = sorted((r["round"], r["em"], r["n_questions"]) for r in mine
                            if r["method"] == method)
            if not REGISTRY[method].trains:
                decoding = next(r["decoding"] for r in mine if r["method"] == method)
                ax.axhline(100 * points[0][1], color="grey", linestyle="--",
                           label=f"{method} ({decoding})")
                continue
            intervals = [wilson(em, n) for _, em, n in points]
            dodge = 0.04 * (i - len(_methods(mine)) / 2)  # keep overlapping bars apart
            ax.errorbar([p[0] + dodge for p in points], [100 * p[1] for p in points],
                        yerr=[[100 * (p[1] - lo) for p, (lo, _) in zip(points, intervals)],
                              [100 * (hi - p[1]) for p, (_, hi) in zip(points, intervals)]],
                        marker="o", capsize=3, label=method)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"{peer} / {benchmark}")
        ax.set_xlabel("round")
        ax.set_ylabel("EM (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion ``p`` measured on ``n`` questions."""
    if n == 0 or math.isnan(p):
        return math.nan, math.nan
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return center - half, center + half


def set_names(sets: list[tuple[list[Run], pa.Table]]) -> list[tuple[str, int | None, int | None]]:
    """Each set's (experiment, seed, rounds): the seed None unless the experiment's sets have
    several seeds, the rounds None unless they have several round counts."""
    keys = [(runs[0].cfg.experiment, set_seed(runs), set_rounds(runs)) for runs, _ in sets]
    several = lambda e, i: len({k[i] for k in keys if k[0] == e}) > 1
    return [(e, s if several(e, 1) else None, r if several(e, 2) else None) for e, s, r in keys]


def _heading(name: tuple[str, int | None, int | None]) -> str:
    """A set's name as a heading: the experiment in code, then its seed and rounds if needed."""
    experiment, seed, rounds = name
    return (f"`{experiment}`" + ("" if seed is None else f", seed {seed}")
            + ("" if rounds is None else f", {rounds} round{'s' * (rounds != 1)}"))


def render_markdown(
    sets: list[tuple[list[Run], pa.Table]], command: str, paths: dict[str, Path],
    plots: list[Path], notes: str | None, answers: list[str] | None = None,
) -> str:
    """The report: what made it, the pre-registered questions' answers (``answers``, rendered),
    the generated reading of every set (and across seeds), the notes, then each set's sections
    (under a heading of its own when there are several)."""
    experiments = ", ".join(dict.fromkeys(runs[0].cfg.experiment for runs, _ in sets))
    lines = [
        f"# Results: {experiments}",
        "",
        (f"Generated by `{command}` on {dt.date.today().isoformat()} from the runs' Parquet files; "
        "do not edit by hand (regenerate it). Table as CSV: "
        f"[{paths['csv'].name}]({paths['csv'].name})."),
        "",
    ]
    names = set_names(sets)
    pairs = [pairwise(runs) for runs, _ in sets]
    lines += answers or []
    lines += ["## Reading", ""]
    for name, (_, table), set_pairs in zip(names, sets, pairs):
        if len(sets) > 1:
            lines += [f"### Set {_heading(name)}", ""]
        lines += [*reading(table.to_pylist(), set_pairs), ""]
    spread = seeds_reading(across_seeds([r for _, t in sets for r in t.to_pylist()],
                                        [d for set_pairs in pairs for d in set_pairs]))
    if spread:
        lines += ["### Across seeds", "", *spread, ""]
    if notes:
        lines += ["## What it means", "", notes.strip(), ""]
    described: set[Path] = set()
    for name, (runs, table), set_pairs, plot_path in zip(names, sets, pairs, plots):
        plot = plot_path.relative_to(paths["markdown"].parent).as_posix()
        shared = [r for r in runs if r.root in described]
        described |= {r.root for r in runs}
        if len(sets) == 1:
            lines += _set_sections(runs, table, set_pairs, plot, "##", shared)
        else:
            lines += [f"## Set {_heading(name)}", "",
                      *_set_sections(runs, table, set_pairs, plot, "###", shared)]
    return "\n".join(lines)


def _set_sections(runs: list[Run], table: pa.Table, pairs: list[dict], plot: str,
                  h: str, shared: list[Run]) -> list[str]:
    """One config set's tables, plot, costs and provenance, headings at level ``h``. A reference
    ``shared`` with an earlier set is costed and described there."""
    rows = table.to_pylist()
    runs = [r for r in runs if r not in shared]
    spent = costs(runs)
    lines = [
        f"{h} Exact match against the base model",
        "",
        ("EM in %, greedy decoding for trained models; `base` is the untuned model at its best "
        "swept temperature (chosen on this eval set, as SePT reports it: a generous reference). "
        "Delta: EM minus base EM on the same questions, in points, with a paired bootstrap 95% "
        "interval (questions resampled) and McNemar's exact p. GV-Gap: accuracy of the "
        "self-verified pick among sampled responses minus their mean accuracy (rel: divided by "
        "the headroom). Tokens and cut: mean length of the scored responses and the share "
        "that hit `eval.max_new_tokens` (an answer cut off is usually wrong)."),
        "",
        ("| method | peer | benchmark | round | n | EM | delta vs base [95% CI] | McNemar p "
        "| GV-Gap abs | GV-Gap rel | tokens | cut |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["peer"], r["benchmark"], _order(r["method"]), r["round"])):
        delta = "-" if r["delta_em"] is None else (
            f"{_pts(r['delta_em'])} [{_pts(r['delta_lo'])}, {_pts(r['delta_hi'])}]")
        method = r["method"] + (f" ({r['decoding']})" if not REGISTRY[r["method"]].trains else "")
        lines.append(
            f"| {method} | {r['peer']} | {r['benchmark']} | {r['round']} | {r['n_questions']} "
            f"| {_pct(r['em'])} | {delta} | {_p(r['mcnemar_p'])} | {_pct(r['gv_gap_abs'])} "
            f"| {_pct(r['gv_gap_rel'])} | {_num(r['mean_tokens'])} | {_pct(r['truncated'])} |")
    lines += ["", f"![EM by round]({plot})"]
    if pairs:
        lines += [
            "",
            f"{h} Between methods",
            "",
            ("EM of one trained method minus another's at their last round, greedy, paired on "
            "the same questions (95% bootstrap interval, McNemar's exact p). `pst` against "
            "`pst-uniform` isolates the PMI weights: both train on the same aggregates."),
            "",
            "| method | vs | peer | benchmark | round | n | delta [95% CI] | McNemar p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for d in sorted(pairs, key=lambda d: (d["peer"], d["benchmark"])):
            lines.append(
                f"| {d['method']} | {d['other']} | {d['peer']} | {d['benchmark']} | {d['round']} "
                f"| {d['n_questions']} | {_pts(d['delta_em'])} [{_pts(d['delta_lo'])}, "
                f"{_pts(d['delta_hi'])}] | {_p(d['mcnemar_p'])} |")
    estimated = reliabilities(runs)
    if estimated:
        lines += [
            "",
            f"{h} Peers' reliability",
            "",
            ("Each peer's accuracy as the reliable aggregate estimated it from the round's answers "
            "without gold (what `pst preflight` shows before training), its agreement with the "
            "other peers, and its accuracy against the gold (an audit). A peer that answers after "
            "a stronger one and repeats it is estimated, and audited, at the stronger one's level: "
            "the learner's own level is base's EM."),
            "",
            "| method | round | peer | estimated | agreement | gold (audit) |",
            "|---|---|---|---|---|---|",
        ]
        for e in sorted(estimated, key=lambda e: (_order(e["method"]), e["round"])):
            lines.append(f"| {e['method']} | {e['round']} | {e['peer']} "
                         f"| {_pct(e.get('reliability_est'))} | {_pct(e.get('agreement_rate'))} "
                         f"| {_pct(e.get('reliability_gold'))} |")
    lines += _weights_section(runs, h)
    trained = {(r["method"], r["peer"], r["round"]): r for r in rows if r["n_targets"] is not None}
    if trained:
        lines += [
            "",
            f"{h} Training targets",
            "",
            ("What each round trained on. Pseudo-label acc.: share of the targets whose answer "
            "matches the gold; weighted: share of the training weight on those targets (equal "
            "when all weights are 1; below it when the weights favour wrong targets). Both are "
            "audits: gold never reaches training."),
            "",
            "| method | peer | round | targets | pseudo-label acc. | weighted |",
            "|---|---|---|---|---|---|",
        ]
        for (method, peer, r), row in sorted(trained.items(),
                                             key=lambda kv: (kv[0][1], _order(kv[0][0]), kv[0][2])):
            lines.append(f"| {method} | {peer} | {r} | {_int(row['n_targets'])} "
                         f"| {_pct(row['pseudo_label_acc'])} | {_pct(row['weighted_label_acc'])} |")
    lines += [
        "",
        f"{h} Cost",
        "",
        ("Tokens generated for training targets (all peers that answered) and for evaluation, and "
        "the wall time of the run in minutes, per stage and in all (models loaded per stage "
        "included; the total adds aggregation). Wall times are only comparable between runs on "
        "the same CPU kind (How it was made names it)."),
        "",
        ("| method | run | rounds | training examples | training-side tokens | eval tokens "
        "| generation | PMI scoring | training | evaluation | wall time |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(spent, key=lambda c: _order(c["method"])):
        stages = " | ".join(f"{c[f'wall_s_{stage}'] / 60:.1f}" for stage in STAGES)
        lines.append(
            f"| {c['method']} | {c['run']} | {c['rounds']} | {_int(c['training_examples'])} "
            f"| {_int(c['train_tokens_generated'])} | {_int(c['eval_tokens_generated'])} "
            f"| {stages} | {c['wall_s'] / 60:.1f} min |")
    lines += ["", f"{h} How it was made", ""]
    for run in sorted(runs, key=lambda r: _order(r.method)):
        lines.append(f"- `{run.method}`: run directory `{run.root}` (its `config.yaml` is the "
                     "full config)")
        for inv in run_invocations(spent, run):
            m = inv["machine"]
            flags = m.get("cpu_flags") and f"flags: {m['cpu_flags']}"
            where = ", ".join(str(x) for x in (m.get("cpu"), flags, f"{m.get('cores')} cores",
                                               f"{m.get('memory_gib')} GiB", m.get("gpu")) if x)
            versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "peft", "vllm")
                                 if k in m)
            lines.append(f"  - {inv['started']}: `{inv['command']}` on {where} ({versions})")
    for run in shared:
        lines.append(f"- `{run.method}`: shared with an earlier set (run directory "
                     f"`{run.root}`): this set's round 0 and reference")
    lines.append("")
    return lines


def _weights_section(runs: list[Run], h: str) -> list[str]:
    """The PMI weights' audit (``pst weights``) of every run whose method weighs by PMI."""
    audited = [(run, row) for run in sorted(runs, key=lambda r: _order(r.method))
               if isinstance(run.cfg.method, PST) for row in audit_run(run.root).to_pylist()]
    if not audited:
        return []
    lines = [
        "",
        f"{h} PMI weights",
        "",
        ("Do the weights single out right targets, or targets the learner had copied word for "
         "word from the peers before it (`pst weights`)? AUROC: the chance that a right (or "
         "copied) target outweighs a wrong (or other) one, 0.5 being no link; beside it the mean "
         "weight of each kind. Right and wrong come from the gold audit, which training never "
         "reads."),
        "",
        ("| method | round | peer | targets | right | copied | AUROC right | AUROC copied "
         "| weight right / wrong | weight copied / other |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, a in audited:
        lines.append(
            f"| {run.method} | {a['round']} | {a['peer']} | {a['n_targets']} | {a['n_right']} "
            f"| {a['n_copied']} | {_num2(a['auroc_right'])} | {_num2(a['auroc_copied'])} "
            f"| {_num2(a['weight_right'])} / {_num2(a['weight_wrong'])} "
            f"| {_num2(a['weight_copied'])} / {_num2(a['weight_other'])} |")
    return lines


def reading(rows: list[dict], pairs: list[dict]) -> list[str]:
    """Generated sentences: each trained method against base at its last round, per peer and
    benchmark; then each PST method against the stronger label-free rival (the self-taught
    method with the higher EM there), the question a user of PST asks."""
    last = {}
    for r in rows:
        key = (r["method"], r["peer"], r["benchmark"])
        if REGISTRY[r["method"]].trains and (key not in last or r["round"] > last[key]["round"]):
            last[key] = r
    if not last:
        return ["No trained method among the runs: only the base model's numbers are shown."]
    bases = {(r["peer"], r["benchmark"]): r for r in rows if not REGISTRY[r["method"]].trains}
    out = []
    for (method, peer, benchmark), r in sorted(last.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                             _order(kv[0][0]))):
        base = bases.get((peer, benchmark))
        if base is None or r["delta_em"] is None:
            out.append(f"- {method}, {peer} on {benchmark}, round {r['round']}: EM "
                       f"{_pct(r['em'])}% (no base run to compare with).")
            continue
        out.append(
            f"- {method}, {peer} on {benchmark}, round {r['round']}: EM {_pct(r['em'])}% vs base "
            f"{_pct(base['em'])}% ({base['decoding']}): {_delta_is(r, 'base')}.")
    rivals = _against_rivals(last, pairs)
    if rivals:
        out += ["", ("PST's methods against the stronger label-free rival (SePT or majority, the "
                     "one with the higher EM at its last round), paired on the same questions:"),
                "", *rivals]
    return out


def seeds_reading(spread: list[dict]) -> list[str]:
    """Generated sentences from ``across_seeds``: each method's EM on every seed, their mean and
    spread, and its paired difference against the rival on every seed."""
    out = []
    for a in sorted(spread, key=lambda a: (a["experiment"], a["peer"], a["benchmark"],
                                           _order(a["method"]))):
        seeds = ", ".join(map(str, a["seeds"]))
        line = (f"- {a['method']}, {a['peer']} on {a['benchmark']} ({a['experiment']}), seeds "
                f"{seeds}, round {'/'.join(map(str, a['rounds']))}: EM "
                f"{' and '.join(_pct(em) + '%' for em in a['em'])}, mean {_pct(a['em_mean'])}%, "
                f"spread {100 * a['em_spread']:.1f} points")
        deltas = [d for d in a["vs_rival"] if d is not None]
        if a["method"] != a["rival"] and len(deltas) == len(a["seeds"]):
            mean = sum(d["delta_em"] for d in deltas) / len(deltas)
            line += (f"; vs {a['rival']} " + " and ".join(
                f"{_pts(d['delta_em'])} [{_pts(d['delta_lo'])}, {_pts(d['delta_hi'])}] "
                f"(p {_p_is(d['mcnemar_p'])})" for d in deltas) + f", mean {_pts(mean)} points")
        out.append(line + ".")
    return out


def _against_rivals(last: dict, pairs: list[dict]) -> list[str]:
    """One sentence per PST method, peer and benchmark, from the pairwise differences."""
    delta = {(d["method"], d["other"], d["peer"], d["benchmark"]): d for d in pairs}
    delta |= {(d["other"], d["method"], d["peer"], d["benchmark"]): flipped(d) for d in pairs}
    out = []
    for peer, benchmark in sorted({(k[1], k[2]) for k in last}):
        here = {m: r for (m, p, b), r in last.items() if (p, b) == (peer, benchmark)}
        selfish = [m for m in here if REGISTRY[m].taught_by == "self"]
        if not selfish:
            continue
        rival = max(selfish, key=lambda m: (here[m]["em"], -_order(m)))
        for method in sorted((m for m in here if REGISTRY[m].taught_by == "peers"), key=_order):
            d = delta.get((method, rival, peer, benchmark))
            if d is None:
                continue
            out.append(
                f"- {method} vs {rival}, {peer} on {benchmark}, round {here[method]['round']}: "
                f"EM {_pct(here[method]['em'])}% vs {_pct(here[rival]['em'])}%: "
                f"{_delta_is(d, rival)}.")
    return out


def _delta_is(d: dict, other: str) -> str:
    """A paired difference and what it says: the bootstrap interval decides the direction;
    where McNemar's test disagrees (p >= 0.05), the sentence says the evidence is weak."""
    lo, hi, p = d["delta_lo"], d["delta_hi"], d["mcnemar_p"]
    if lo > 0 or hi < 0:
        verdict = f"{'better' if lo > 0 else 'worse'} than {other}"
        if p >= 0.05:
            verdict += " by the interval, but McNemar's test does not reject a tie: weak evidence"
    else:
        verdict = f"not distinguishable from {other} (the interval contains 0)"
    return (f"{_pts(d['delta_em'])} points, 95% CI [{_pts(lo)}, {_pts(hi)}], McNemar p "
            f"{_p_is(p)}: {verdict}")


def run_invocations(spent: list[dict], run: Run) -> list[dict]:
    return next(c["invocations"] for c in spent if c["run"] == run.root.name)


def _order(method: str) -> int:
    return list(REGISTRY).index(method)


def _methods(rows: list[dict]) -> list[str]:
    return sorted({r["method"] for r in rows}, key=_order)


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}" if v >= 0.001 else "<0.001"


def _num(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.0f}"


def _p_is(v: float) -> str:
    """``_p`` as a predicate for a sentence: "< 0.001" or "= 0.044"."""
    return "< 0.001" if v < 0.001 else f"= {_p(v)}"


def _num2(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def _int(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{int(v):,}"
