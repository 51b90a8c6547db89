"""The steps every method's rounds share: ingest, sample the round's questions, let a model
answer alone, make targets, train, evaluate, collect the per-peer parts, compute metrics.

A step is a small frozen dataclass: which round and peer it is for, the one file (or checkpoint
directory) it writes, and ``run`` to compute it. Steps never decide whether to run: the runner
(``pst_core.runner``) skips a step whose output is ``done`` and records the wall time of those it
runs. A method family's own steps (PST's turns, aggregate and PMI; each family's targets) live
in its recipe under ``pst_core.recipes``, which also plans its rounds with ``training_waves``
and ``evaluation_waves`` from here.

Gold answers: a round's steps read the pool as (id, question) only (``questions.parquet``); the
gold is read by ``MakeTargets`` for the audit column ``gold_match`` (which training never reads)
and by ``Evaluate``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from pst_core import evaluate as evaluation
from pst_core import train as training
from pst_core.aggregate import audit_gold
from pst_core.data import ingest_dataset, select_split
from pst_core.data.ingest import check_split
from pst_core.errors import DataError
from pst_core.generate import generate_solo
from pst_core.metrics import round_metrics
from pst_core.models.checkpoint import is_checkpoint, save_checkpoint
from pst_core.models.loading import load_peer_model
from pst_core.models.tokens import prompt_style, render_prompt
from pst_core.peers import combine_turns, order_peers
from pst_core.prompts import solo_prompt
from pst_core.schemas import (
    CONSISTENCY_SCHEMA,
    DATASET_SCHEMA,
    EVAL_SCHEMA,
    METRICS_SCHEMA,
    QUESTIONS_SCHEMA,
    RESPONSES_SCHEMA,
    TARGETS_SCHEMA,
    TRAIN_LOG_SCHEMA,
)
from pst_core.store import read_table, write_table
from pst_core.tracking import trainer_reporting
from pst_core.train import add_adapters

if TYPE_CHECKING:
    from collections.abc import Callable

    from pst_core.config import EvalConfig, ExperimentConfig
    from pst_core.context import RunContext
    from pst_core.data.spec import DatasetConfig

log = logging.getLogger(__name__)

EVAL_CHUNK_ROWS = 512  # decode rows (greedy, swept and sampled answers) per written slice


@dataclass(frozen=True, kw_only=True)
class Step:
    """One unit of work with one output. Subclasses set ``kind`` (the Prefect task name)."""

    kind: ClassVar[str]
    retries: ClassVar[int] = 2  # model steps may hit a transient failure; collecting may not

    round: int

    def output(self, ctx: RunContext) -> Path:
        raise NotImplementedError

    def done(self, ctx: RunContext) -> bool:
        """Whether the output is complete (outputs are written atomically, so: it exists)."""
        return self.output(ctx).exists()

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError

    def timing(self) -> str | None:
        """The stage name its wall time is recorded under (``wall_s/<stage>``); None: untimed."""
        return None

    @property
    def label(self) -> str:
        """How the Prefect UI and the logs name this step, e.g. ``train qwen-0.5b``."""
        return " ".join([self.kind.replace("-", " "), *self._label_parts()])

    @property
    def title(self) -> str:
        """The label with its round: ``round 1: train qwen-0.5b`` (logs, Prefect task runs)."""
        return f"round {self.round}: {self.label}"

    def _label_parts(self) -> list[str]:
        peer = getattr(self, "peer", None)
        return [peer] if peer else []


@dataclass(frozen=True, kw_only=True)
class Ingest(Step):
    """Read one dataset (pool or eval benchmark) into the run's ``data/<name>.parquet``."""

    kind: ClassVar[str] = "ingest"
    spec: DatasetConfig

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.dataset(self.spec.name)

    def run(self, ctx: RunContext) -> None:
        table = ingest_dataset(self.spec)[0]
        pool = self.spec == ctx.cfg.data.pool  # a Hub dataset's split is known only now
        check_split(table, self.spec, self.spec.split or ("train" if pool else "eval"),
                    "data.pool" if pool else "evaluation set")
        write_table(table, self.output(ctx), DATASET_SCHEMA)

    @property
    def title(self) -> str:  # setup, before any round
        return self.label

    def _label_parts(self) -> list[str]:
        return [self.spec.name]


def round_sample(ctx: RunContext, r: int) -> pa.Table:
    """Round r's fresh sample of the pool (id, question): the r-th slice of a stream of seeded
    permutations. Rounds get disjoint questions until the pool is used up; then the stream goes
    on with a new permutation (repeats within a round are skipped)."""
    spec = ctx.cfg.data.pool
    pool = select_split(ctx.dataset(spec), spec.split or "train", spec.limit)
    pool = pool.select(["id", "question"])
    size = pool.num_rows
    if size == 0:  # the stream below would never end
        raise DataError(f"data.pool {spec.name!r}: no question in its {spec.split or 'train'} "
                        "split to sample")
    n = min(ctx.cfg.questions_per_round, size)

    def stream():
        for epoch in itertools.count():
            order = list(range(size))
            random.Random(f"{ctx.cfg.seed}-{epoch}").shuffle(order)
            yield from order

    picked: list[int] = []
    for index in itertools.islice(stream(), (r - 1) * n, None):
        if index not in picked:
            picked.append(index)
        if len(picked) == n:
            break
    return pool.take(picked)


@dataclass(frozen=True, kw_only=True)
class SampleQuestions(Step):
    """Write ``round_<r>/questions.parquet``: the round's sample and, where peers answer in turn
    (``order``: config, rotate or consistency), each question's answering order."""

    kind: ClassVar[str] = "sample-questions"
    retries: ClassVar[int] = 0
    order: str | None = None  # None: every model answers alone

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.questions(self.round)

    def run(self, ctx: RunContext) -> None:
        sample = round_sample(ctx, self.round)
        ids = sample.column("id").to_pylist()
        orders = {} if self.order is None else order_peers(
            list(ctx.peers), ids, self.order, self.round, self._ranking(ctx))
        order = pa.array([orders.get(q, []) for q in ids], pa.list_(pa.string()))
        write_table(sample.append_column("order", order), self.output(ctx), QUESTIONS_SCHEMA)

    def _ranking(self, ctx: RunContext) -> list[str] | None:
        """The peers most self-consistent first (``order: consistency``; ties in config order)."""
        if self.order != "consistency":
            return None
        table = read_table(ctx.layout.consistency(self.round), CONSISTENCY_SCHEMA)
        scores = dict(zip(table.column("peer").to_pylist(), table.column("consistency").to_pylist()))
        return sorted(ctx.peers, key=lambda p: -scores[p])


@dataclass(frozen=True, kw_only=True)
class GenerateSolo(Step):
    """``peer`` answers the round's questions alone, ``n`` times at ``temperature``."""

    kind: ClassVar[str] = "generate-solo"
    peer: str
    temperature: float
    n: int = 1

    def timing(self) -> str:
        return "generate/self"

    def output(self, ctx: RunContext) -> Path:
        return ctx.part(self.round, f"self_{self.peer}")

    def run(self, ctx: RunContext) -> None:
        config = ctx.peers[self.peer]
        params = ctx.sampling(self.peer, self.round, temperature=self.temperature, n=self.n,
                              seed=ctx.seed(self.round, self.peer))
        with ctx.backend(config, ctx.checkpoint(self.peer, self.round - 1)) as backend:
            table = generate_solo(ctx.questions(self.round), backend, params, peer=self.peer,
                                  model=config.source, prompt_format=config.prompt_format,
                                  rules=ctx.cfg.answers.rules)
        write_table(table, self.output(ctx), RESPONSES_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class CollectResponses(Step):
    """All of the round's responses in one table, by answering position, then question order."""

    kind: ClassVar[str] = "collect"
    retries: ClassVar[int] = 0
    parts: tuple[str, ...]

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.responses(self.round)

    def run(self, ctx: RunContext) -> None:
        turns = [read_table(ctx.part(self.round, name), RESPONSES_SCHEMA) for name in self.parts]
        ids = ctx.questions(self.round).column("id").to_pylist()
        write_table(combine_turns(turns, ids), self.output(ctx), RESPONSES_SCHEMA)

    def _label_parts(self) -> list[str]:
        return ["responses"]


@dataclass(frozen=True, kw_only=True)
class Collect(Step):
    """Concatenate per-peer parts into the round's table. Cheap and always redone, so a table
    is never stale after one of its parts was extended (a resumed evaluation)."""

    kind: ClassVar[str] = "collect"
    retries: ClassVar[int] = 0
    table: str  # the round's file, without .parquet: targets, train_log, eval, pmi
    schema: pa.Schema
    parts: tuple[str, ...]

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.table(self.round, self.table)

    def done(self, ctx: RunContext) -> bool:
        return False

    def run(self, ctx: RunContext) -> None:
        tables = [read_table(path, self.schema) for path in self._inputs(ctx)]
        write_table(pa.concat_tables(tables) if tables else self.schema.empty_table(),
                    self.output(ctx), self.schema)

    def _inputs(self, ctx: RunContext) -> list[Path]:
        return [ctx.part(self.round, name) for name in self.parts]

    def _label_parts(self) -> list[str]:
        return [self.table]


@dataclass(frozen=True, kw_only=True)
class MakeTargets(Step):
    """What ``peer`` trains on this round (each recipe's subclass says, in ``make``), with the
    gold audit column added afterwards (training never reads it)."""

    kind: ClassVar[str] = "make-targets"
    retries: ClassVar[int] = 0
    peer: str

    def output(self, ctx: RunContext) -> Path:
        return ctx.part(self.round, f"targets_{self.peer}")

    def make(self, ctx: RunContext) -> pa.Table:
        """The targets (``TARGETS_SCHEMA``, ``gold_match`` null)."""
        raise NotImplementedError

    def run(self, ctx: RunContext) -> None:
        audited = audit_gold(self.make(ctx), ctx.dataset(ctx.cfg.data.pool),
                             ctx.cfg.answers.multi_answer)
        write_table(audited, self.output(ctx), TARGETS_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class Train(Step):
    """Fine-tune ``peer`` on its weighted targets, from its previous round's checkpoint.

    The training log is written before the checkpoint: a crash between the two retrains
    (deterministically) rather than losing the log.
    """

    kind: ClassVar[str] = "train"
    retries: ClassVar[int] = 1
    peer: str

    def timing(self) -> str:
        return "train"

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.checkpoint(self.round, self.peer)

    def done(self, ctx: RunContext) -> bool:
        return is_checkpoint(self.output(ctx))

    def run(self, ctx: RunContext) -> None:
        cfg, r, peer = ctx.cfg, self.round, ctx.peers[self.peer]
        questions = ctx.questions(r)
        text = dict(zip(questions.column("id").to_pylist(),
                        questions.column("question").to_pylist()))
        examples = read_table(ctx.part(r, f"targets_{self.peer}"), TARGETS_SCHEMA).to_pylist()
        previous = ctx.checkpoint(self.peer, r - 1)
        if cfg.train.finetune == "full" and previous is not None:
            model, tokenizer = load_peer_model(peer, previous)  # a full model: load it whole
            previous = None
        else:
            model, tokenizer = load_peer_model(peer)
        seed = ctx.seed(r, self.peer)
        model = add_adapters(model, cfg.train, previous, seed)
        style = prompt_style(tokenizer, peer.prompt_format)
        prompts = [render_prompt(tokenizer, solo_prompt(text[t["question_id"]], style))
                   for t in examples]
        log.info("round %d: training %s on %d example(s)", r, self.peer, len(examples))
        with trainer_reporting(cfg, ctx.layout, r, self.peer):
            table = training.train_peer(
                model, tokenizer, prompts, [t["response"] for t in examples],
                [t["weight"] for t in examples], cfg.train, peer=self.peer, seed=seed,
                run_name=f"{ctx.layout.root.name}/round_{r}/{self.peer} trainer",
            )
        write_table(table, ctx.part(r, f"train_log_{self.peer}"), TRAIN_LOG_SCHEMA)
        save_checkpoint(model, tokenizer, self.output(ctx))


@dataclass(frozen=True, kw_only=True)
class Evaluate(Step):
    """``peer`` (with its round-r checkpoint) on one eval benchmark.

    Resumable by question: raising ``eval.limit`` or ``eval.gap_limit`` on a finished run
    evaluates only the questions its part lacks.
    """

    kind: ClassVar[str] = "evaluate"
    peer: str
    benchmark: str

    def timing(self) -> str:
        return f"eval/{self.benchmark}"

    def output(self, ctx: RunContext) -> Path:
        """The part is named after the settings that shape its rows, so that changing one
        (``eval.temperature``, say) evaluates anew instead of passing old rows for new ones."""
        digest = hashlib.sha256(json.dumps(self._settings(ctx), sort_keys=True).encode())
        return ctx.part(self.round, f"eval_{self.peer}@{self.benchmark}.{digest.hexdigest()[:8]}")

    def _settings(self, ctx: RunContext) -> dict:
        """What an evaluation row depends on besides the question (and the run's identity)."""
        return self._eval_config(ctx).model_dump(mode="json", include={
            "max_new_tokens", "n_samples", "temperature"}) | {
            "sweep": list(ctx.cfg.method.eval_temperatures)}

    def _eval_config(self, ctx: RunContext) -> EvalConfig:
        budget = ctx.peers[self.peer].max_new_tokens
        return ctx.cfg.eval.model_copy(update={"max_new_tokens": budget} if budget else {})

    def done(self, ctx: RunContext) -> bool:
        if not self.output(ctx).exists():
            return False
        greedy, gap = self._missing(ctx)
        return greedy.num_rows == 0 and gap.num_rows == 0

    def _missing(self, ctx: RunContext) -> tuple[pa.Table, pa.Table]:
        """The questions still to answer greedily, and those still to sample for the GV gap."""
        spec = next(s for s in ctx.cfg.data.eval if s.name == self.benchmark)
        wanted = select_split(ctx.dataset(spec), spec.split or "eval",
                              ctx.cfg.eval.limit or spec.limit)
        gap = wanted.slice(0, ctx.cfg.eval.gap_limit if ctx.cfg.samples_gap(
            self.round, self.benchmark) else 0)
        if not self.output(ctx).exists():
            return wanted, gap
        done = read_table(self.output(ctx), EVAL_SCHEMA).select(["question_id", "kind"])
        have = {kind: {q for q, k in zip(done.column(0).to_pylist(), done.column(1).to_pylist())
                       if k == kind} for kind in ("greedy", "sample")}
        lacking = lambda table, kind: table.filter(  # noqa: E731
            pa.array([q not in have[kind] for q in table.column("id").to_pylist()], pa.bool_()))
        return lacking(wanted, "greedy"), lacking(gap, "sample")

    def run(self, ctx: RunContext) -> None:
        """Evaluates the missing questions in slices of about ``EVAL_CHUNK_ROWS`` decode rows,
        writing the part after each: a crash or a session's end loses one slice, not an
        evaluation (the GV gap's 200 x 8 samples made one decode of over an hour on 2 cores).
        A sampled row's generator is seeded by its prompt's index in its decode, so the samples
        are fixed by the config and the questions missing when the step starts, like a resumed
        evaluation's; greedy answers do not depend on the slicing. Known limit: every slice
        numbers its prompts from 0, so the k-th gap question of each slice draws from the same
        random stream (different prompts, so not the same samples; each question's samples stay
        a fair draw)."""
        config, r = ctx.peers[self.peer], self.round
        questions, gap = self._missing(ctx)
        table = (read_table(self.output(ctx), EVAL_SCHEMA) if self.output(ctx).exists()
                 else EVAL_SCHEMA.empty_table())
        eval_config = self._eval_config(ctx)
        sweep = ctx.cfg.method.eval_temperatures
        rows = (questions.num_rows * (1 + sum(t > 0 for t in sweep))
                + gap.num_rows * eval_config.n_samples)
        slices = max(1, -(-rows // EVAL_CHUNK_ROWS))
        with ctx.backend(config, ctx.checkpoint(self.peer, r)) as backend:
            for i in range(slices):
                asked, sampled = _slice(questions, i, slices), _slice(gap, i, slices)
                if asked.num_rows == sampled.num_rows == 0:
                    continue
                part = evaluation.evaluate_peer(
                    asked, backend, eval_config, round_index=r, peer=self.peer,
                    benchmark=self.benchmark, prompt_format=config.prompt_format,
                    rules=ctx.cfg.answers.rules, multi_answer=ctx.cfg.answers.multi_answer,
                    seed=ctx.seed(r, self.peer), sweep=sweep, gap_questions=sampled,
                )
                table = pa.concat_tables([table, part])
                write_table(table, self.output(ctx), EVAL_SCHEMA)

    def _label_parts(self) -> list[str]:
        return [self.peer, self.benchmark]


def _slice(table: pa.Table, i: int, slices: int) -> pa.Table:
    """The i-th of ``slices`` near-equal consecutive slices of ``table``."""
    start, end = i * table.num_rows // slices, (i + 1) * table.num_rows // slices
    return table.slice(start, end - start)


@dataclass(frozen=True, kw_only=True)
class CollectEval(Collect):
    """The round's ``eval.parquet``, from its evaluation steps' parts (peer, then benchmark)."""

    table: str = "eval"
    schema: pa.Schema = EVAL_SCHEMA
    parts: tuple[str, ...] = ()
    evaluations: tuple[Evaluate, ...]

    def _inputs(self, ctx: RunContext) -> list[Path]:
        return [step.output(ctx) for step in self.evaluations]


@dataclass(frozen=True, kw_only=True)
class Metrics(Step):
    """Round r's metrics (``metrics.parquet``), from the round's tables and stage timings."""

    kind: ClassVar[str] = "metrics"
    retries: ClassVar[int] = 0
    learners: tuple[str, ...]

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.metrics(self.round)

    def done(self, ctx: RunContext) -> bool:
        return False

    def run(self, ctx: RunContext) -> None:
        table = round_metrics(ctx.layout, self.round, list(self.learners))
        write_table(table, self.output(ctx), METRICS_SCHEMA)


def training_waves(cfg: ExperimentConfig, r: int,
                   targets: Callable[[str], MakeTargets]) -> list[list[Step]]:
    """What every method does with its responses: each learner's targets (``targets(peer)``),
    collected, each learner trained on them, the training logs collected."""
    learners = cfg.learner_names
    return [[targets(p) for p in learners],
            [Collect(round=r, table="targets", schema=TARGETS_SCHEMA,
                     parts=tuple(f"targets_{p}" for p in learners))],
            [Train(round=r, peer=p) for p in learners],
            [Collect(round=r, table="train_log", schema=TRAIN_LOG_SCHEMA,
                     parts=tuple(f"train_log_{p}" for p in learners))]]


def evaluation_waves(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Every learner on every evaluation benchmark, the round's eval table, its metrics."""
    learners = cfg.learner_names
    evaluations = [Evaluate(round=r, peer=p, benchmark=spec.name)
                   for p in learners for spec in cfg.data.eval]
    return [evaluations, [CollectEval(round=r, evaluations=tuple(evaluations))],
            [Metrics(round=r, learners=tuple(learners))]]
