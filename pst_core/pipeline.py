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

import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pst_core.aggregate import (
    AGGREGATES_SCHEMA,
    REJECTED_SCHEMA,
    aggregate_responses,
    audit_gold,
    training_view,
)
from pst_core.config import DatasetConfig, ExperimentConfig, PeerConfig
from pst_core.data import DATASET_SCHEMA, ingest_dataset, select_split
from pst_core.evaluate import EVAL_SCHEMA, METRICS_SCHEMA, eval_metrics, evaluate_peer
from pst_core.generate import RESPONSES_SCHEMA
from pst_core.models.backend import Backend, SamplingParams, load_backend
from pst_core.models.hf import load_peer_model
from pst_core.models.source import load_model
from pst_core.models.tokens import prompt_style, render_prompt
from pst_core.peers import order_peers, rank_by_consistency, run_peer_round
from pst_core.pmi import PMI_SCHEMA, score_pmi, weigh
from pst_core.prompts import solo_prompt
from pst_core.store import RunLayout, atomic_path, cached_stage, read_table, write_table
from pst_core.train import TRAIN_LOG_SCHEMA, add_adapters, is_checkpoint, save_checkpoint, train_peer

log = logging.getLogger(__name__)


class Experiment:
    """One run of an experiment config: its layout, data, and the stages of every round."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.layout = RunLayout.for_run(cfg.output_dir, cfg.experiment, cfg.run_name)
        self.peers: dict[str, PeerConfig] = {p.name: p for p in cfg.peers}

    def run(self) -> RunLayout:
        """Round 0 evaluation, then every training round; resumes wherever a previous run stopped."""
        self.write_config()
        for r in range(self.cfg.rounds + 1):
            self.run_round(r)
        return self.layout

    # -- data ------------------------------------------------------------------------------

    def write_config(self) -> Path:
        path = self.layout.root / "config.yaml"
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
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

    def loader(self, upto_round: int) -> Callable[[str], Backend]:
        return lambda name: load_backend(self.peers[name], self.checkpoint(name, upto_round))

    # -- rounds ----------------------------------------------------------------------------

    def run_round(self, r: int) -> None:
        if r > 0:
            questions = self.round_questions(r)
            responses = self.generate(r, questions)
            aggregates = self.aggregate(r, responses)
            pmi = self.score(r, questions, responses, aggregates)
            self.train(r, questions, aggregates, pmi)
        self.evaluate(r)
        self.metrics(r)

    def generate(self, r: int, questions: pa.Table) -> pa.Table:
        cfg = self.cfg
        params = {
            name: SamplingParams(max_new_tokens=peer.max_new_tokens or cfg.generation.max_new_tokens,
                                 temperature=cfg.generation.temperature,
                                 top_p=cfg.generation.top_p, seed=cfg.seed + r)
            for name, peer in self.peers.items()
        }
        ranking = self.consistency_ranking(r, questions) if cfg.generation.order == "consistency" else None
        orders = order_peers(list(self.peers), questions.column("id").to_pylist(),
                             cfg.generation.order, r, ranking)

        def compute() -> pa.Table:
            return run_peer_round(
                questions, orders, self.loader(r - 1), params,
                models={n: p.source for n, p in self.peers.items()},
                prompt_formats=self.prompt_formats(), rules=cfg.answers.rules,
                parts_dir=self.layout.round_dir(r) / "parts",
            )

        return cached_stage(self.layout.responses(r), RESPONSES_SCHEMA,
                            self.timed(r, "generate", None, compute))

    def consistency_ranking(self, r: int, questions: pa.Table) -> list[str]:
        """Peers by label-free self-consistency on a few of the round's questions (cached)."""
        gen = self.cfg.generation
        schema = pa.schema([pa.field("peer", pa.string(), nullable=False),
                            pa.field("consistency", pa.float64(), nullable=False)])

        def compute() -> pa.Table:
            params = SamplingParams(max_new_tokens=gen.max_new_tokens,
                                    temperature=gen.temperature or 0.7, top_p=gen.top_p,
                                    n=gen.consistency_samples, seed=self.cfg.seed + r)
            # One budget for all peers here: the ranking compares them on equal terms.
            scores = rank_by_consistency(questions.slice(0, gen.consistency_questions),
                                         list(self.peers), self.loader(r - 1), params,
                                         self.prompt_formats(), self.cfg.answers.rules)
            return pa.table({"peer": list(scores), "consistency": list(scores.values())})

        table = cached_stage(self.layout.round_dir(r) / "consistency.parquet", schema,
                             self.timed(r, "consistency", None, compute))
        scores = dict(zip(table.column("peer").to_pylist(), table.column("consistency").to_pylist()))
        return sorted(self.peers, key=lambda p: -scores[p])  # stable: config order breaks ties

    def aggregate(self, r: int, responses: pa.Table) -> pa.Table:
        def compute() -> pa.Table:
            aggregates, rejected = aggregate_responses(responses, self.cfg.aggregate.method,
                                                       self.cfg.aggregate.representative)
            write_table(rejected, self.layout.round_dir(r) / "rejected.parquet", REJECTED_SCHEMA)
            return audit_gold(aggregates, self.dataset(self.cfg.data.pool),
                              self.cfg.answers.multi_answer)

        return cached_stage(self.layout.aggregates(r), AGGREGATES_SCHEMA,
                            self.timed(r, "aggregate", None, compute))

    def score(self, r: int, questions: pa.Table, responses: pa.Table, aggregates: pa.Table) -> pa.Table:
        pmi_cfg = self.cfg.pmi
        if pmi_cfg.scorer is None:
            load_scorer, scorer_name, formats = self.loader(r - 1), (lambda p: p), self.prompt_formats()
        else:
            scorer = PeerConfig(name="scorer", source=pmi_cfg.scorer)
            load_scorer = lambda _peer: load_backend(scorer)  # noqa: E731
            scorer_name, formats = (lambda _p: pmi_cfg.scorer), {p: "auto" for p in self.peers}

        def compute() -> pa.Table:
            table = score_pmi(questions, responses, aggregates, load_scorer,
                              prompt_formats=formats, scorer_name=scorer_name,
                              reduction=pmi_cfg.reduction)
            return weigh(table, pmi_cfg.beta, pmi_cfg.w_min, pmi_cfg.w_max, pmi_cfg.standardize)

        return cached_stage(self.layout.pmi(r), PMI_SCHEMA, self.timed(r, "score", None, compute))

    def train(self, r: int, questions: pa.Table, aggregates: pa.Table, pmi: pa.Table) -> pa.Table:
        """Fine-tune each peer on the aggregates with its PMI weights; one checkpoint per peer."""
        question_text = dict(zip(questions.column("id").to_pylist(),
                                 questions.column("question").to_pylist()))
        targets = training_view(aggregates).to_pylist()
        parts = []
        for index, (name, peer) in enumerate(self.peers.items()):
            part_path = self.layout.round_dir(r) / "parts" / f"train_log_{name}.parquet"
            checkpoint = self.layout.checkpoint(r, name)
            if not is_checkpoint(checkpoint):
                weight = {row["question_id"]: row["weight"]
                          for row in pmi.filter(pc.equal(pmi.column("peer"), name)).to_pylist()}
                examples = [t for t in targets if t["question_id"] in weight]
                log_table = self.timed(r, "train", name, lambda: self._train_one(
                    r, index, peer, examples, question_text, weight, checkpoint, part_path))()
                parts.append(log_table)
            else:
                parts.append(read_table(part_path, TRAIN_LOG_SCHEMA))
        table = pa.concat_tables(parts)
        write_table(table, self.layout.train_log(r), TRAIN_LOG_SCHEMA)
        return table

    def _train_one(self, r, index, peer, examples, question_text, weight, checkpoint, part_path):
        cfg = self.cfg
        previous = self.checkpoint(peer.name, r - 1)
        if cfg.train.method == "full" and previous is not None:
            model, tokenizer = load_model(str(previous), dtype=peer.dtype, device=peer.device)
            previous = None
        else:
            model, tokenizer = load_peer_model(peer)
        seed = cfg.seed * 1000 + r * 10 + index
        model = add_adapters(model, cfg.train, previous, seed)
        style = prompt_style(tokenizer, peer.prompt_format)
        prompts = [render_prompt(tokenizer, solo_prompt(question_text[t["question_id"]], style))
                   for t in examples]
        log.info("round %d: training %s on %d example(s)", r, peer.name, len(examples))
        table = train_peer(model, tokenizer, prompts, [t["response"] for t in examples],
                           [weight[t["question_id"]] for t in examples], cfg.train,
                           peer=peer.name, seed=seed)
        write_table(table, part_path, TRAIN_LOG_SCHEMA)  # the log first: see module docstring
        save_checkpoint(model, tokenizer, checkpoint)
        return table

    def evaluate(self, r: int) -> pa.Table:
        """Every peer (with its round-r checkpoint) on every eval dataset; parts per peer."""
        parts = []
        for index, (name, peer) in enumerate(self.peers.items()):
            eval_cfg = self.cfg.eval
            if peer.max_new_tokens:
                eval_cfg = eval_cfg.model_copy(update={"max_new_tokens": peer.max_new_tokens})
            missing = [s for s in self.cfg.data.eval if not self._eval_part(r, name, s).exists()]
            backend = self.loader(r)(name) if missing else None
            try:
                for spec in self.cfg.data.eval:
                    questions = select_split(self.dataset(spec), spec.split or "eval",
                                             self.cfg.eval.limit or spec.limit)
                    compute = lambda spec=spec, q=questions: evaluate_peer(  # noqa: E731
                        q, backend, eval_cfg, round_index=r, peer=name,
                        benchmark=spec.name, prompt_format=peer.prompt_format,
                        rules=self.cfg.answers.rules, multi_answer=self.cfg.answers.multi_answer,
                        seed=self.cfg.seed * 1000 + r * 10 + index,
                    )
                    parts.append(cached_stage(self._eval_part(r, name, spec), EVAL_SCHEMA,
                                              self.timed(r, f"eval/{spec.name}", name, compute)))
            finally:
                if backend is not None:
                    backend.close()
        table = pa.concat_tables(parts) if parts else EVAL_SCHEMA.empty_table()
        write_table(table, self.layout.eval(r), EVAL_SCHEMA)
        return table

    def _eval_part(self, r: int, peer: str, spec: DatasetConfig) -> Path:
        return self.layout.round_dir(r) / "parts" / f"eval_{peer}_{spec.name}.parquet"

    # -- bookkeeping -----------------------------------------------------------------------

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

    def metrics(self, r: int) -> pa.Table:
        """Round r's metrics in long form (round, peer, benchmark, name, value)."""
        rows = eval_metrics(read_table(self.layout.eval(r), EVAL_SCHEMA))
        add = lambda name, value, peer=None: rows.append(  # noqa: E731
            {"round": r, "peer": peer, "benchmark": None, "name": name, "value": value})
        if r > 0:
            responses = read_table(self.layout.responses(r), RESPONSES_SCHEMA).to_pylist()
            aggregates = read_table(self.layout.aggregates(r), AGGREGATES_SCHEMA).to_pylist()
            rejected = read_table(self.layout.round_dir(r) / "rejected.parquet", REJECTED_SCHEMA)
            pmi = read_table(self.layout.pmi(r), PMI_SCHEMA).to_pylist()
            train_log = read_table(self.layout.train_log(r), TRAIN_LOG_SCHEMA).to_pylist()
            audited = [a["gold_match"] for a in aggregates if a["gold_match"] is not None]
            add("n_questions", float(len({x["question_id"] for x in responses})))
            add("n_aggregated", float(len(aggregates)))
            add("n_rejected", float(rejected.num_rows))
            add("agreement", _mean([a["agreement"] for a in aggregates]))
            add("pseudo_label_acc", _mean(audited))
            add("tokens_generated", float(sum(x["n_tokens"] for x in responses)))
            for name in self.peers:
                mine = [x for x in responses if x["peer"] == name]
                weights = [p["weight"] for p in pmi if p["peer"] == name]
                losses = [t["loss"] for t in train_log if t["peer"] == name]
                add("answer_rate", _mean([x["answer"] is not None for x in mine]), name)
                add("tokens_generated", float(sum(x["n_tokens"] for x in mine)), name)
                add("mean_pmi", _mean([p["pmi"] for p in pmi if p["peer"] == name]), name)
                add("weight_std", _std(weights), name)
                add("weight_max", max(weights, default=float("nan")), name)
                add("train_loss_first", losses[0] if losses else float("nan"), name)
                add("train_loss_last", losses[-1] if losses else float("nan"), name)
        for path in sorted((self.layout.round_dir(r) / "timings").glob("*.json")):
            record = json.loads(path.read_text())
            add(f"wall_s/{record['stage']}", record["wall_s"], record["peer"])
        table = pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)
        write_table(table, self.layout.metrics(r), METRICS_SCHEMA)
        return table


def summary(layout: RunLayout, rounds: int) -> list[dict]:
    """Per round, peer and benchmark: EM and the GV gap, from the rounds' metrics files."""
    out: dict[tuple, dict] = {}
    for r in range(rounds + 1):
        if not layout.metrics(r).exists():
            continue
        for m in read_table(layout.metrics(r), METRICS_SCHEMA).to_pylist():
            if m["benchmark"] is not None:
                key = (m["round"], m["peer"], m["benchmark"])
                out.setdefault(key, {"round": key[0], "peer": key[1], "benchmark": key[2]})
                out[key][m["name"]] = m["value"]
    return list(out.values())


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _std(values) -> float:
    values = list(values)
    if not values:
        return float("nan")
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
