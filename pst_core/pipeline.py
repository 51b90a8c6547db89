"""Rounds (DESIGN.md): round 0 evaluates the untuned peers; each round r = 1..R then runs
peers -> aggregate -> PMI -> train -> evaluate on a fresh sample of the unlabeled pool, with the
peers refreshed by the previous round's training (online refresh).

Every stage writes its output atomically and is skipped when that output exists, and the long
stages are split into parts (one per peer, or per position and peer), so killing the process at
any point and running the same command again finishes the run without recomputing finished work
and without losing or duplicating rows. Training writes its log before its checkpoint, so a
crash between the two retrains (deterministically) rather than losing the log.

Gold answers: the stages of a round receive the pool as (id, question) only; the gold answers
are read by ``audit_gold`` (the pseudo-label audit column) and by evaluation, nothing else.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pst_core import evaluate as evaluation
from pst_core import train as training
from pst_core.aggregate import (
    AGGREGATES_SCHEMA,
    REJECTED_SCHEMA,
    aggregate_responses,
    audit_gold,
)
from pst_core.config import DatasetConfig, ExperimentConfig, PeerConfig
from pst_core.data import DATASET_SCHEMA, ingest_dataset, select_split
from pst_core.evaluate import EVAL_SCHEMA, METRICS_SCHEMA
from pst_core.generate import RESPONSES_SCHEMA, generate_solo
from pst_core.metrics import round_metrics
from pst_core.models.backend import SamplingParams
from pst_core.models.checkpoint import is_checkpoint, save_checkpoint
from pst_core.models.loading import load_backend, load_peer_model
from pst_core.models.source import load_model
from pst_core.models.tokens import prompt_style, render_prompt
from pst_core.peers import (
    answer_turn,
    combine_turns,
    earlier_responses,
    order_peers,
    rank_by_consistency,
    turn_questions,
)
from pst_core.pmi import PMI_SCHEMA, score_pmi, weigh
from pst_core.prompts import solo_prompt
from pst_core.provenance import record_invocation
from pst_core.store import RunLayout, atomic_path, cached_stage, read_table, write_table
from pst_core.targets import TARGETS_SCHEMA, aggregate_targets, majority_targets, own_targets
from pst_core.train import TRAIN_LOG_SCHEMA, add_adapters

log = logging.getLogger(__name__)


class Experiment:
    """One run of an experiment config: its layout, data, and the stages of every round."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.layout = RunLayout.for_run(cfg.output_dir, cfg.experiment, cfg.run_name)
        self.peers: dict[str, PeerConfig] = {p.name: p for p in cfg.peers}
        self.learners: list[str] = cfg.learner_names

    def run(self) -> RunLayout:
        """Round 0 evaluation, then every training round; resumes wherever a previous run stopped."""
        self.write_config()
        for r in range(self.cfg.first_round, self.cfg.rounds + 1):
            self.run_round(r)
        return self.layout

    # -- data ------------------------------------------------------------------------------

    def write_config(self) -> Path:
        """The run's config.yaml, and a record of this invocation (command, machine)."""
        path = self.layout.root / "config.yaml"
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
        record_invocation(self.layout.root)
        return path

    def dataset(self, spec: DatasetConfig) -> pa.Table:
        """The ingested dataset (all splits), stored under the run's data/ directory."""
        return cached_stage(self.layout.dataset(spec.name), DATASET_SCHEMA,
                            lambda: ingest_dataset(spec)[0])

    def pool(self) -> pa.Table:
        """The unlabeled pool: (id, question) of the pool's split; the gold is not carried."""
        spec = self.cfg.data.pool
        table = select_split(self.dataset(spec), spec.split or "train", spec.limit)
        return table.select(["id", "question"])

    def round_questions(self, r: int) -> pa.Table:
        """Round r's fresh sample: the r-th slice of a stream of seeded pool permutations.

        Rounds get disjoint questions until the pool is used up; then the stream continues with
        a new permutation (repeats within a round are skipped).
        """
        pool = self.pool()
        size = pool.num_rows
        n = min(self.cfg.questions_per_round, size)

        def stream():
            for epoch in itertools.count():
                order = list(range(size))
                random.Random(f"{self.cfg.seed}-{epoch}").shuffle(order)
                yield from order

        picked: list[int] = []
        for index in itertools.islice(stream(), (r - 1) * n, None):
            if index not in picked:
                picked.append(index)
            if len(picked) == n:
                break
        return pool.take(picked)

    # -- models ----------------------------------------------------------------------------

    def checkpoint(self, peer: str, upto_round: int) -> Path | None:
        """The peer's latest checkpoint from rounds 1..upto_round, or None (the untuned model)."""
        for r in range(upto_round, 0, -1):
            path = self.layout.checkpoint(r, peer)
            if is_checkpoint(path):
                return path
        return None

    @contextmanager
    def backend(self, peer: str | PeerConfig, checkpoint_round: int | Path | None):
        """A loaded backend for ``peer`` with its checkpoint (from rounds <= a round, or a path),
        released on exit so the next peer has the memory."""
        config = self.peers[peer] if isinstance(peer, str) else peer
        checkpoint = (self.checkpoint(config.name, checkpoint_round)
                      if isinstance(checkpoint_round, int) else checkpoint_round)
        backend = load_backend(config, checkpoint)
        try:
            yield backend
        finally:
            backend.close()

    # -- rounds ----------------------------------------------------------------------------

    def run_round(self, r: int) -> None:
        """One round, stage by stage, in this process (the flows run the same plan as tasks)."""
        for stage, calls in self.round_plan(r):
            for args in calls:
                getattr(self, stage)(*args)

    def round_plan(self, r: int) -> Iterator[tuple[str, list[tuple]]]:
        """Round r's stages in order, each with the argument tuples of its independent calls.

        Calls within one step (different peers) do not depend on each other, so an orchestrator
        may run them in parallel; steps must run in order, each before the next is asked for
        (the answering order of the turns is known once ``consistency_ranking`` has run).
        """
        method = self.cfg.method
        per_peer = lambda stage: (stage, [(r, p) for p in self.learners])  # noqa: E731
        once = lambda stage: (stage, [(r,)])  # noqa: E731
        if r > 0:
            if method in ("pst", "pst-uniform"):
                if self.cfg.generation.order == "consistency":
                    yield once("consistency_ranking")
                for position in range(len(self.peers)):
                    yield "generate_turn", [(r, position, p) for p in self.turn_peers(r, position)]
                yield once("collect_responses")
                yield once("aggregate")
                if method == "pst":
                    yield per_peer("score_peer")
                    yield once("collect_pmi")
            else:
                yield per_peer("generate_self")
                yield once("collect_responses")
            yield per_peer("make_targets")
            yield once("collect_targets")
            yield per_peer("train_peer")
            yield once("collect_train_log")
        yield per_peer("evaluate_peer")
        yield once("collect_eval")
        yield once("metrics")

    # -- peers (DESIGN.md step 1) ----------------------------------------------------------

    def orders(self, r: int) -> dict[str, list[str]]:
        """The answering order of each of round r's questions."""
        order = self.cfg.generation.order
        ranking = self.consistency_ranking(r) if order == "consistency" else None
        return order_peers(list(self.peers), self.round_questions(r).column("id").to_pylist(),
                           order, r, ranking)

    def turn_peers(self, r: int, position: int) -> list[str]:
        """The peers with questions to answer at ``position`` (their turns are independent)."""
        orders = self.orders(r)
        return [p for p in self.peers if turn_questions(orders, position, p)]

    def generate_turn(self, r: int, position: int, peer: str) -> Path:
        """``peer`` answers its questions at ``position``; needs the earlier positions' turns."""
        path = self._part(r, f"turn{position}_{peer}")
        if path.exists():
            return path
        questions, orders = self.round_questions(r), self.orders(r)
        earlier_turns = [read_table(self._part(r, f"turn{pos}_{p}"), RESPONSES_SCHEMA)
                         for pos in range(position) for p in self.turn_peers(r, pos)]
        config = self.peers[peer]
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens or self.cfg.generation.max_new_tokens,
            temperature=self.cfg.generation.temperature, top_p=self.cfg.generation.top_p,
            seed=self.cfg.seed + r,
        )

        def compute() -> pa.Table:
            with self.backend(peer, r - 1) as backend:
                return answer_turn(
                    questions, turn_questions(orders, position, peer),
                    earlier_responses(earlier_turns, questions.column("id").to_pylist()),
                    backend, params, position=position, peer=peer, model=config.source,
                    prompt_format=config.prompt_format, rules=self.cfg.answers.rules,
                )

        cached_stage(path, RESPONSES_SCHEMA, self.timed(r, f"generate/turn{position}", peer, compute))
        return path

    def generate_self(self, r: int, peer: str) -> Path:
        """SePT / majority: ``peer`` answers the round's questions alone, at its method's
        temperature (``sept.temperature``, or ``majority.n_samples`` at ``majority.temperature``)."""
        path = self._part(r, f"self_{peer}")
        config = self.peers[peer]
        if self.cfg.method == "sept":
            temperature, n = self.cfg.sept.temperature, 1
        else:
            temperature, n = self.cfg.majority.temperature, self.cfg.majority.n_samples
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens or self.cfg.generation.max_new_tokens,
            temperature=temperature, top_p=self.cfg.generation.top_p, n=n,
            seed=self._seed(r, peer),
        )

        def compute() -> pa.Table:
            with self.backend(peer, r - 1) as backend:
                return generate_solo(self.round_questions(r), backend, params, peer=peer,
                                     model=config.source, prompt_format=config.prompt_format,
                                     rules=self.cfg.answers.rules)

        cached_stage(path, RESPONSES_SCHEMA, self.timed(r, "generate/self", peer, compute))
        return path

    def collect_responses(self, r: int) -> Path:
        if self.cfg.method in ("pst", "pst-uniform"):
            names = [f"turn{pos}_{p}" for pos in range(len(self.peers)) for p in self.turn_peers(r, pos)]
        else:
            names = [f"self_{p}" for p in self.learners]
        turns = [read_table(self._part(r, name), RESPONSES_SCHEMA) for name in names]
        ids = self.round_questions(r).column("id").to_pylist()
        cached_stage(self.layout.responses(r), RESPONSES_SCHEMA, lambda: combine_turns(turns, ids))
        return self.layout.responses(r)

    def consistency_ranking(self, r: int) -> list[str]:
        """Peers by label-free self-consistency on a few of the round's questions (cached)."""
        gen = self.cfg.generation
        schema = pa.schema([pa.field("peer", pa.string(), nullable=False),
                            pa.field("consistency", pa.float64(), nullable=False)])

        def compute() -> pa.Table:
            # One budget for all peers here: the ranking compares them on equal terms.
            params = SamplingParams(max_new_tokens=gen.max_new_tokens,
                                    temperature=gen.temperature or 0.7, top_p=gen.top_p,
                                    n=gen.consistency_samples, seed=self.cfg.seed + r)
            scores = rank_by_consistency(
                self.round_questions(r).slice(0, gen.consistency_questions), list(self.peers),
                lambda name: load_backend(self.peers[name], self.checkpoint(name, r - 1)),
                params, self.prompt_formats(), self.cfg.answers.rules,
            )
            return pa.table({"peer": list(scores), "consistency": list(scores.values())})

        table = cached_stage(self.layout.round_dir(r) / "consistency.parquet", schema,
                             self.timed(r, "consistency", None, compute))
        scores = dict(zip(table.column("peer").to_pylist(), table.column("consistency").to_pylist()))
        return sorted(self.peers, key=lambda p: -scores[p])  # stable: config order breaks ties

    # -- aggregate, PMI, train (steps 2-5) -------------------------------------------------

    def aggregate(self, r: int) -> Path:
        def compute() -> pa.Table:
            responses = read_table(self.layout.responses(r), RESPONSES_SCHEMA)
            aggregates, rejected = aggregate_responses(responses, self.cfg.aggregate.method,
                                                       self.cfg.aggregate.representative)
            write_table(rejected, self.layout.round_dir(r) / "rejected.parquet", REJECTED_SCHEMA)
            return audit_gold(aggregates, self.dataset(self.cfg.data.pool),
                              self.cfg.answers.multi_answer)

        cached_stage(self.layout.aggregates(r), AGGREGATES_SCHEMA,
                     self.timed(r, "aggregate", None, compute))
        return self.layout.aggregates(r)

    def score_peer(self, r: int, peer: str) -> Path:
        """PMI and weights of one peer's responses (weights are normalized per peer)."""
        pmi_cfg = self.cfg.pmi
        path = self._part(r, f"pmi_{peer}")

        def compute() -> pa.Table:
            responses = read_table(self.layout.responses(r), RESPONSES_SCHEMA)
            mine = responses.filter(pc.equal(responses.column("peer"), peer))
            scorer = self.peers[peer] if pmi_cfg.scorer is None else PeerConfig(
                name="scorer", source=pmi_cfg.scorer)
            checkpoint = self.checkpoint(peer, r - 1) if pmi_cfg.scorer is None else None
            with self.backend(scorer, checkpoint) as backend:
                table = score_pmi(
                    self.round_questions(r), mine, read_table(self.layout.aggregates(r),
                                                              AGGREGATES_SCHEMA),
                    lambda _peer: backend, prompt_formats={peer: scorer.prompt_format},
                    scorer_name=lambda _peer: pmi_cfg.scorer or peer, reduction=pmi_cfg.reduction,
                )
            return weigh(table, pmi_cfg.beta, pmi_cfg.w_min, pmi_cfg.w_max, pmi_cfg.standardize)

        cached_stage(path, PMI_SCHEMA, self.timed(r, "score", peer, compute))
        return path

    def collect_pmi(self, r: int) -> Path:
        return self._collect(r, "pmi", PMI_SCHEMA, self.layout.pmi(r))

    def make_targets(self, r: int, peer: str) -> Path:
        """What ``peer`` trains on this round (see ``pst_core.targets``), with the gold audit."""
        cfg = self.cfg

        def compute() -> pa.Table:
            if cfg.method in ("pst", "pst-uniform"):
                weights = None
                if cfg.method == "pst":
                    pmi = read_table(self._part(r, f"pmi_{peer}"), PMI_SCHEMA)
                    weights = dict(zip(pmi.column("question_id").to_pylist(),
                                       pmi.column("weight").to_pylist()))
                table = aggregate_targets(
                    read_table(self.layout.aggregates(r), AGGREGATES_SCHEMA), peer, weights)
            else:
                mine = read_table(self._part(r, f"self_{peer}"), RESPONSES_SCHEMA)
                table = own_targets(mine, peer) if cfg.method == "sept" else majority_targets(
                    mine, peer, cfg.majority.min_agreement, cfg.majority.responses_per_question)
            return audit_gold(table, self.dataset(cfg.data.pool), cfg.answers.multi_answer)

        path = self._part(r, f"targets_{peer}")
        cached_stage(path, TARGETS_SCHEMA, compute)
        return path

    def collect_targets(self, r: int) -> Path:
        return self._collect(r, "targets", TARGETS_SCHEMA, self.layout.targets(r))

    def train_peer(self, r: int, peer: str) -> Path:
        """Fine-tune ``peer`` on its weighted targets; returns its checkpoint."""
        checkpoint = self.layout.checkpoint(r, peer)
        if is_checkpoint(checkpoint):
            return checkpoint
        self.timed(r, "train", peer, lambda: self._train(r, peer, checkpoint))()
        return checkpoint

    def _train(self, r: int, name: str, checkpoint: Path) -> pa.Table:
        cfg, peer = self.cfg, self.peers[name]
        questions = self.round_questions(r)
        text = dict(zip(questions.column("id").to_pylist(), questions.column("question").to_pylist()))
        examples = read_table(self._part(r, f"targets_{name}"), TARGETS_SCHEMA).to_pylist()
        previous = self.checkpoint(name, r - 1)
        if cfg.train.method == "full" and previous is not None:
            model, tokenizer = load_model(str(previous), dtype=peer.dtype, device=peer.device)
            previous = None
        else:
            model, tokenizer = load_peer_model(peer)
        seed = self._seed(r, name)
        model = add_adapters(model, cfg.train, previous, seed)
        style = prompt_style(tokenizer, peer.prompt_format)
        prompts = [render_prompt(tokenizer, solo_prompt(text[t["question_id"]], style))
                   for t in examples]
        log.info("round %d: training %s on %d example(s)", r, name, len(examples))
        table = training.train_peer(
            model, tokenizer, prompts, [t["response"] for t in examples],
            [t["weight"] for t in examples], cfg.train, peer=name, seed=seed,
        )
        write_table(table, self._part(r, f"train_log_{name}"), TRAIN_LOG_SCHEMA)  # log first
        save_checkpoint(model, tokenizer, checkpoint)
        return table

    def collect_train_log(self, r: int) -> Path:
        return self._collect(r, "train_log", TRAIN_LOG_SCHEMA, self.layout.train_log(r))

    # -- evaluate (step 7) -----------------------------------------------------------------

    def evaluate_peer(self, r: int, peer: str) -> Path:
        """``peer`` (with its round-r checkpoint) on every eval dataset; one part per peer,
        built from one part per benchmark (a crash loses at most the benchmark in progress)."""
        path = self._part(r, f"eval_{peer}")
        if path.exists():
            return path
        config = self.peers[peer]
        eval_cfg = self.cfg.eval
        if config.max_new_tokens:
            eval_cfg = eval_cfg.model_copy(update={"max_new_tokens": config.max_new_tokens})
        seed = self._seed(r, peer)

        def benchmark(spec: DatasetConfig, backend) -> pa.Table:
            return evaluation.evaluate_peer(
                select_split(self.dataset(spec), spec.split or "eval",
                             self.cfg.eval.limit or spec.limit),
                backend, eval_cfg, round_index=r, peer=peer, benchmark=spec.name,
                prompt_format=config.prompt_format, rules=self.cfg.answers.rules,
                multi_answer=self.cfg.answers.multi_answer, seed=seed,
                sweep=self.cfg.base.temperatures if self.cfg.method == "base" else (),
            )

        def compute() -> pa.Table:
            # Loaded on the first benchmark that is not cached yet, and timed with it: each
            # benchmark's wall time is recorded by the invocation that computed it, so a
            # resumed evaluation still adds up.
            with ExitStack() as stack:
                backend = functools.cache(lambda: stack.enter_context(self.backend(peer, r)))
                return pa.concat_tables([
                    cached_stage(self._part(r, f"eval_{peer}@{spec.name}"), EVAL_SCHEMA,
                                 self.timed(r, f"eval/{spec.name}", peer,
                                            lambda spec=spec: benchmark(spec, backend())))
                    for spec in self.cfg.data.eval
                ] or [EVAL_SCHEMA.empty_table()])

        cached_stage(path, EVAL_SCHEMA, compute)
        return path

    def collect_eval(self, r: int) -> Path:
        return self._collect(r, "eval", EVAL_SCHEMA, self.layout.eval(r))

    # -- bookkeeping -----------------------------------------------------------------------

    def _part(self, r: int, name: str) -> Path:
        return self.layout.round_dir(r) / "parts" / f"{name}.parquet"

    def _collect(self, r: int, prefix: str, schema: pa.Schema, out: Path) -> Path:
        """Concatenate the per-peer parts ``<prefix>_<peer>`` into the round's table."""
        parts = [read_table(self._part(r, f"{prefix}_{p}"), schema) for p in self.learners]
        write_table(pa.concat_tables(parts), out, schema)
        return out

    def _seed(self, r: int, peer: str) -> int:
        """A distinct, reproducible seed per (experiment seed, round, peer)."""
        return self.cfg.seed * 1000 + r * 10 + list(self.peers).index(peer)

    def prompt_formats(self) -> dict[str, str]:
        return {name: peer.prompt_format for name, peer in self.peers.items()}

    def timed(self, r: int, stage: str, peer: str | None, compute: Callable[[], pa.Table]):
        """Wrap ``compute`` so its wall time is recorded when (and only when) it actually runs."""

        def run() -> pa.Table:
            start = time.perf_counter()
            table = compute()
            record = {"stage": stage, "peer": peer, "wall_s": time.perf_counter() - start}
            name = f"{stage.replace('/', '_')}{'_' + peer if peer else ''}.json"
            with atomic_path(self.layout.round_dir(r) / "timings" / name) as tmp:
                tmp.write_text(json.dumps(record))
            return table

        return run

    def metrics(self, r: int) -> Path:
        """Round r's metrics (metrics.parquet), from the round's tables and stage timings."""
        table = round_metrics(self.layout, r, self.learners)
        write_table(table, self.layout.metrics(r), METRICS_SCHEMA)
        return self.layout.metrics(r)
