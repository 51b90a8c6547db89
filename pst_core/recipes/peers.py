"""The PST family's rounds, top to bottom (``pst``, ``pst-uniform``, ``pst-shuffled``,
``pst-paper``, ``pst-robust``; their settings: ``pst_core.methods.pst``).

A round: (with ``order: consistency``) rank the peers by self-consistency; sample the pool and
fix each question's answering order; the peers answer in turn, each seeing the earlier answers
(``pst_core.peers``); their responses in one table; each peer's label-free reliability
(``pst_core.reliability``); the aggregate a* of each question (``pst_core.aggregate``: a vote,
the last responder's response, or the reliability-weighted answer); the PMI between each
learner's response and a* and its weight (``pst_core.pmi``; ``pst-uniform`` scores nothing);
each learner's targets (a*, or its own turn, weighted as the method says); then the training and
evaluation every method shares (``pst_core.steps``).

The turns of one answering position are independent steps (different peers, different
questions); positions run in order. Under ``order: config`` each position has one peer; under
``rotate`` or ``consistency`` every peer gets a step per position (one with no questions there
writes an empty part without loading its model), so the plan never depends on a model's output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from pst_core.aggregate import aggregate_responses, audit_gold
from pst_core.methods.pst import PeerRounds
from pst_core.models.backend import SamplingParams
from pst_core.models.loading import load_backend
from pst_core.models.spec import PeerConfig
from pst_core.peers import answer_turn, earlier_responses, rank_by_consistency, turn_questions
from pst_core.pmi import score_pmi, weigh
from pst_core.reliability import audit_reliability, estimate_reliability
from pst_core.schemas import (
    AGGREGATES_SCHEMA,
    CONSISTENCY_SCHEMA,
    PMI_SCHEMA,
    REJECTED_SCHEMA,
    RELIABILITY_SCHEMA,
    RESPONSES_SCHEMA,
)
from pst_core.steps import (
    Collect,
    CollectResponses,
    MakeTargets,
    SampleQuestions,
    Step,
    evaluation_waves,
    round_sample,
    training_waves,
)
from pst_core.store import read_table, write_table
from pst_core.targets import aggregate_targets, own_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


def plan_round(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Round r of a PST method, in waves (a wave's steps are independent)."""
    return [*generation_waves(cfg, r),
            *training_waves(cfg, r, lambda peer: PeerTargets(round=r, peer=peer)),
            *evaluation_waves(cfg, r)]


def sampling_waves(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """The peers ranked (``order: consistency``), then the round's questions and their order."""
    order = cfg.method.order
    return [*([[RankConsistency(round=r)]] if order == "consistency" else []),
            [SampleQuestions(round=r, order=order)]]


def response_waves(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """The sample, the turns, their responses in one table, and the peers' reliability (``pst
    preflight`` runs these alone)."""
    turns = [[GenerateTurn(round=r, position=pos, peer=p) for p in turn_peers(cfg, pos)]
             for pos in range(len(cfg.peers))]
    parts = tuple(step.part for wave in turns for step in wave)
    return [*sampling_waves(cfg, r), *turns, [CollectResponses(round=r, parts=parts)],
            [EstimateReliability(round=r)]]


def generation_waves(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Everything up to the learners' weights: responses, the aggregate, PMI (``pst weights``
    runs these alone)."""
    waves = [*response_waves(cfg, r), [Aggregate(round=r)]]
    if cfg.method.weighs == "uniform":
        return waves
    learners = cfg.learner_names
    return [*waves, [ScorePMI(round=r, peer=p) for p in learners],
            [Collect(round=r, table="pmi", schema=PMI_SCHEMA,
                     parts=tuple(f"pmi_{p}" for p in learners))]]


def turn_peers(cfg: ExperimentConfig, position: int) -> list[str]:
    """The peers that may answer at ``position`` (known without running anything)."""
    names = [p.name for p in cfg.peers]
    return [names[position]] if cfg.method.order == "config" else names


def _peer_rounds(ctx: RunContext) -> PeerRounds:
    method = ctx.cfg.method
    assert isinstance(method, PeerRounds), method.name  # the plan put this step here
    return method


@dataclass(frozen=True, kw_only=True)
class PeerTargets(MakeTargets):
    """A learner's targets: a* of every aggregated question (or its own turn, ``target:
    own``), weighted by its PMI weights (``pst-shuffled``: permuted; ``pst-uniform``: 1);
    with ``train_last: false``, not the questions it answered last."""

    def make(self, ctx: RunContext) -> pa.Table:
        method, r, peer = _peer_rounds(ctx), self.round, self.peer
        aggregates = read_table(ctx.layout.aggregates(r), AGGREGATES_SCHEMA)
        weights = self._weights(ctx)
        if method.target == "own":
            responses = read_table(ctx.layout.responses(r), RESPONSES_SCHEMA)
            mine = responses.filter(pc.equal(responses.column("peer"), peer))
            aggregated = set(aggregates.column("question_id").to_pylist())
            weights = {q: 1.0 for q in aggregated} if weights is None else weights
            table = own_targets(mine, peer, {q: w for q, w in weights.items() if q in aggregated})
        else:
            table = aggregate_targets(aggregates, peer, weights)
        if method.train_last:
            return table
        questions = ctx.questions(r)
        last = {q for q, order in zip(questions.column("id").to_pylist(),
                                      questions.column("order").to_pylist()) if order[-1] == peer}
        return table.filter(pa.array([q not in last for q in
                                      table.column("question_id").to_pylist()], pa.bool_()))

    def _weights(self, ctx: RunContext) -> dict[str, float] | None:
        """Question id -> the learner's training weight; None: all 1."""
        weighs = _peer_rounds(ctx).weighs
        if weighs == "uniform":
            return None
        pmi = read_table(ctx.part(self.round, f"pmi_{self.peer}"), PMI_SCHEMA)
        weights = dict(zip(pmi.column("question_id").to_pylist(),
                           pmi.column("weight").to_pylist()))
        if weighs == "shuffled":  # the same weights, no link to the example
            values = list(weights.values())
            random.Random(ctx.seed(self.round, self.peer)).shuffle(values)
            weights = dict(zip(weights, values))
        return weights


@dataclass(frozen=True, kw_only=True)
class RankConsistency(Step):
    """Peers by label-free self-consistency on the first questions of the round's sample."""

    kind: ClassVar[str] = "rank-consistency"

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.consistency(self.round)

    def timing(self) -> str:
        return "consistency"

    def run(self, ctx: RunContext) -> None:
        method, gen, r = _peer_rounds(ctx), ctx.cfg.generation, self.round
        # One budget for all peers here: the ranking compares them on equal terms.
        params = SamplingParams(max_new_tokens=gen.max_new_tokens,
                                temperature=gen.temperature or 0.7, top_p=gen.top_p,
                                n=method.consistency_samples, seed=ctx.cfg.seed + r)
        scores = rank_by_consistency(
            round_sample(ctx, r).slice(0, method.consistency_questions), list(ctx.peers),
            lambda name: load_backend(ctx.peers[name], ctx.checkpoint(name, r - 1)),
            params, {n: p.prompt_format for n, p in ctx.peers.items()}, ctx.cfg.answers.rules,
        )
        table = pa.table({"peer": list(scores), "consistency": list(scores.values())})
        write_table(table, self.output(ctx), CONSISTENCY_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class GenerateTurn(Step):
    """``peer`` answers its questions at ``position``, seeing the earlier positions' answers."""

    kind: ClassVar[str] = "generate-turn"
    position: int
    peer: str

    @property
    def part(self) -> str:
        return f"turn{self.position}_{self.peer}"

    def output(self, ctx: RunContext) -> Path:
        return ctx.part(self.round, self.part)

    def timing(self) -> str:
        return f"generate/turn{self.position}"

    def _label_parts(self) -> list[str]:
        return [str(self.position + 1), self.peer]

    def run(self, ctx: RunContext) -> None:
        r, config = self.round, ctx.peers[self.peer]
        questions = ctx.questions(r)
        ids = questions.column("id").to_pylist()
        mine = turn_questions(dict(zip(ids, questions.column("order").to_pylist())),
                              self.position, self.peer)
        if not mine:  # another peer holds this position everywhere: nothing to load
            write_table(RESPONSES_SCHEMA.empty_table(), self.output(ctx), RESPONSES_SCHEMA)
            return
        earlier = [read_table(ctx.part(r, GenerateTurn(round=r, position=pos, peer=p).part),
                              RESPONSES_SCHEMA)
                   for pos in range(self.position) for p in turn_peers(ctx.cfg, pos)]
        with ctx.backend(config, ctx.checkpoint(self.peer, r - 1)) as backend:
            table = answer_turn(
                questions, mine, earlier_responses(earlier, ids), backend,
                ctx.sampling(self.peer, r), position=self.position, peer=self.peer,
                model=config.source, prompt_format=config.prompt_format,
                rules=ctx.cfg.answers.rules,
            )
        write_table(table, self.output(ctx), RESPONSES_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class EstimateReliability(Step):
    """Each peer's label-free reliability on the round's answers (``peers.parquet``), with its
    gold accuracy as an audit column only: is the group a better teacher than the learner?"""

    kind: ClassVar[str] = "estimate-reliability"
    retries: ClassVar[int] = 0

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.peers(self.round)

    def run(self, ctx: RunContext) -> None:
        responses = read_table(ctx.layout.responses(self.round), RESPONSES_SCHEMA)
        table = estimate_reliability(responses, method=_peer_rounds(ctx).aggregate.reliability)
        audited = audit_reliability(table, responses, ctx.dataset(ctx.cfg.data.pool),
                                    ctx.cfg.answers.multi_answer)
        write_table(audited, self.output(ctx), RELIABILITY_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class Aggregate(Step):
    """One target a* per question (``aggregates.parquet``), the dropped ones with a reason."""

    kind: ClassVar[str] = "aggregate"
    retries: ClassVar[int] = 0

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.aggregates(self.round)

    def timing(self) -> str:
        return "aggregate"

    def run(self, ctx: RunContext) -> None:
        rule = _peer_rounds(ctx).aggregate
        responses = read_table(ctx.layout.responses(self.round), RESPONSES_SCHEMA)
        reliability = (read_table(EstimateReliability(round=self.round).output(ctx),
                                  RELIABILITY_SCHEMA) if rule.rule == "reliable" else None)
        aggregates, rejected = aggregate_responses(responses, rule.rule, rule.representative,
                                                   reliability, rule.min_share)
        write_table(rejected, ctx.layout.rejected(self.round),
                    REJECTED_SCHEMA)
        audited = audit_gold(aggregates, ctx.dataset(ctx.cfg.data.pool),
                             ctx.cfg.answers.multi_answer)
        write_table(audited, self.output(ctx), AGGREGATES_SCHEMA)


@dataclass(frozen=True, kw_only=True)
class ScorePMI(Step):
    """PMI and weights of one peer's responses (weights are normalized per peer and round)."""

    kind: ClassVar[str] = "score-pmi"
    peer: str

    def output(self, ctx: RunContext) -> Path:
        return ctx.part(self.round, f"pmi_{self.peer}")

    def timing(self) -> str:
        return "score"

    def run(self, ctx: RunContext) -> None:
        pmi_cfg, r = _peer_rounds(ctx).pmi, self.round
        responses = read_table(ctx.layout.responses(r), RESPONSES_SCHEMA)
        mine = responses.filter(pc.equal(responses.column("peer"), self.peer))
        if pmi_cfg.scorer is None:
            scorer, checkpoint = ctx.peers[self.peer], ctx.checkpoint(self.peer, r - 1)
        else:
            scorer, checkpoint = PeerConfig(name="scorer", source=pmi_cfg.scorer), None
        with ctx.backend(scorer, checkpoint) as backend:
            table = score_pmi(
                ctx.questions(r), mine, read_table(ctx.layout.aggregates(r), AGGREGATES_SCHEMA),
                lambda _peer: backend, prompt_formats={self.peer: scorer.prompt_format},
                scorer_name=lambda _peer: pmi_cfg.scorer or self.peer,
                reduction=pmi_cfg.reduction,
            )
        weighted = weigh(table, pmi_cfg.beta, pmi_cfg.w_min, pmi_cfg.w_max, pmi_cfg.standardize,
                         pmi_cfg.transform)
        write_table(weighted, self.output(ctx), PMI_SCHEMA)
