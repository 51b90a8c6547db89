"""The PST family: ``pst``, its ablations ``pst-uniform`` (no weights) and ``pst-shuffled``
(weights permuted), the paper's reading ``pst-paper`` and ``pst-robust`` (beyond the paper).

Peers answer each question in turn, each seeing the earlier answers (``pst_core.peers``); each
peer's label-free reliability is estimated from the round's answers (``pst_core.reliability``);
the aggregate a* of their responses is the reference (``pst_core.aggregate``: a vote, the last
responder's response, or the reliability-weighted answer); the PMI between each peer's response
and a* sets that peer's weight (``pst_core.pmi``; ``pst-uniform``: every weight 1); each learner
trains on a* or on its own turn (``target``).

The turns of one answering position are independent steps (different peers, different
questions); positions run in order. Under ``order: config`` each position has one peer; under
``rotate`` or ``consistency`` every peer gets a step per position (one with no questions there
writes an empty part without loading its model), so the plan never depends on a model's output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pst_core.aggregate import REPRESENTATIVES, aggregate_responses, audit_gold
from pst_core.methods.method import Method
from pst_core.models.backend import SamplingParams
from pst_core.models.loading import load_backend
from pst_core.models.spec import PeerConfig
from pst_core.peers import (
    answer_turn,
    earlier_responses,
    order_peers,
    rank_by_consistency,
    turn_questions,
)
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
from pst_core.section import Section
from pst_core.steps import Collect, CollectResponses, Step, round_sample
from pst_core.store import read_table, write_table
from pst_core.targets import aggregate_targets, own_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


class AggregateConfig(Section):
    rule: Literal["vote", "last", "reliable"] = Field(
        "vote",
        description="vote: majority over the peers' extracted answers, ties to the later peer "
        "(ours); last: the last responder's response (the paper's reading); reliable: peers "
        "weighed by their label-free reliability (round_<r>/peers.parquet), ties to the more "
        "reliable, the representative carrier's response as the target.",
    )
    representative: Literal["latest", "earliest", "reliable"] | None = Field(
        None,
        description="Which response carrying the winning answer becomes the target. vote: the "
        "latest or the earliest (keeps the first solver's full working when later "
        "peers only restate its answer); reliable: the most reliable carrier's or the earliest. "
        "null: the rule's own (vote: latest, reliable: reliable). A response cut off at the "
        "token limit is chosen only when no carrier finished.",
    )
    reliability: Literal["dawid-skene", "agreement"] = Field(
        "dawid-skene",
        description="How peers' reliability is estimated without labels: a one-coin Dawid-Skene "
        "EM over the round's answers, or each peer's agreement with the others.",
    )
    min_share: float = Field(
        0.0, ge=0, le=1,
        description="reliable: skip questions whose winning answer's posterior is below this "
        "(as majority self-training skips low-agreement questions).",
    )

    @model_validator(mode="after")
    def _representative_fits_rule(self) -> AggregateConfig:
        offered = REPRESENTATIVES.get(self.rule)
        if self.representative is not None and offered and self.representative not in offered:
            raise ValueError(f"representative {self.representative!r} does not apply to rule "
                             f"{self.rule!r}: use one of {', '.join(offered)} (or leave it out)")
        return self


class PMIConfig(Section):
    scorer: str | None = Field(
        None, description="Model source of a fixed scorer; null: each peer scores itself."
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="Reduce the aggregate's token log-probs by mean or sum."
    )
    beta: float = Field(1.0, ge=0, description="Weight temperature; 0 gives uniform weights.")
    standardize: Literal["z", "raw"] = Field(
        "z", description="z: standardize PMI per peer and round before weighting; raw: use PMI."
    )
    transform: Literal["exp", "sigmoid"] = Field(
        "exp", description="PMI to weight: exp: clip(exp(-beta s), w_min, w_max) (ours); "
        "sigmoid: 2 sigmoid(-beta s) (the paper's reading); s is z or raw PMI; then mean 1.")
    w_min: float = Field(0.2, gt=0, description="Lower clip of an exp weight (before normalizing).")
    w_max: float = Field(5.0, gt=0, description="Upper clip of an exp weight (before normalizing).")

    @model_validator(mode="after")
    def _clip_order(self) -> PMIConfig:
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must be <= w_max ({self.w_max})")
        return self


class PeerRounds(Method):
    """What the PST family shares: the answering order, the turns, the peers' reliability, the
    aggregate, and targets (the reference, or each peer's own turn) weighted by ``weights``."""

    taught_by: ClassVar[str] = "peers"
    order: Literal["config", "rotate", "consistency"] = Field(
        "config",
        description="Peer order: config order; rotate per question; or consistency (most "
        "self-consistent peer first, a label-free ranking).",
    )
    consistency_questions: int = Field(
        16, gt=0, description="Pool questions used to rank peers when order is consistency."
    )
    consistency_samples: int = Field(
        4, ge=2, description="Samples per question used to rank peers when order is consistency."
    )
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    target: Literal["reference", "own"] = Field(
        "reference", description="What each learner trains on: the reference a* (ours), or its "
        "own response in the chain, weighted the same way (the paper's reading).")
    train_last: bool = Field(
        True, description="Train a learner on the questions where it answered last (its response "
        "saw every other; with rule last it is the reference itself).")

    def check(self, cfg: ExperimentConfig) -> str | None:
        if len(cfg.peers) < 2:
            return f"method {self.name} needs at least 2 peers, got {len(cfg.peers)}"
        return None

    def before_sample(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        return [[RankConsistency(round=r)]] if self.order == "consistency" else []

    def answering_orders(self, ctx: RunContext, r: int, ids: list[str]) -> dict[str, list[str]]:
        ranking = None
        if self.order == "consistency":
            table = read_table(RankConsistency(round=r).output(ctx), CONSISTENCY_SCHEMA)
            scores = dict(zip(table.column("peer").to_pylist(),
                              table.column("consistency").to_pylist()))
            ranking = sorted(ctx.peers, key=lambda p: -scores[p])  # stable: config order on ties
        return order_peers(list(ctx.peers), ids, self.order, r, ranking)

    def turn_peers(self, cfg: ExperimentConfig, position: int) -> list[str]:
        """The peers that may answer at ``position`` (known without running anything)."""
        names = [p.name for p in cfg.peers]
        return [names[position]] if self.order == "config" else names

    def response_steps(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        """The turns, their responses in one table, and the peers' reliability (``pst
        preflight`` runs these alone)."""
        turns = [[GenerateTurn(round=r, position=pos, peer=p) for p in self.turn_peers(cfg, pos)]
                 for pos in range(len(cfg.peers))]
        parts = tuple(step.part for wave in turns for step in wave)
        return [*turns, [CollectResponses(round=r, parts=parts)], [EstimateReliability(round=r)]]

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        return [*self.response_steps(cfg, r), [Aggregate(round=r)]]

    def targets(self, ctx: RunContext, r: int, peer: str) -> pa.Table:
        aggregates = read_table(ctx.layout.aggregates(r), AGGREGATES_SCHEMA)
        weights = self.weights(ctx, r, peer)
        if self.target == "own":
            responses = read_table(ctx.layout.responses(r), RESPONSES_SCHEMA)
            mine = responses.filter(pc.equal(responses.column("peer"), peer))
            aggregated = set(aggregates.column("question_id").to_pylist())
            weights = {q: 1.0 for q in aggregated} if weights is None else weights
            table = own_targets(mine, peer, {q: w for q, w in weights.items() if q in aggregated})
        else:
            table = aggregate_targets(aggregates, peer, weights)
        if self.train_last:
            return table
        questions = ctx.questions(r)
        last = {q for q, order in zip(questions.column("id").to_pylist(),
                                      questions.column("order").to_pylist()) if order[-1] == peer}
        return table.filter(pa.array([q not in last for q in
                                      table.column("question_id").to_pylist()], pa.bool_()))

    def weights(self, ctx: RunContext, r: int, peer: str) -> dict[str, float] | None:
        """Question id -> the peer's training weight; None: all 1."""
        return None


class PST(PeerRounds):
    """Peers answer in turn; their aggregate is every target, weighted by PMI."""

    name: Literal["pst"] = "pst"
    pmi: PMIConfig = Field(default_factory=PMIConfig)

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        learners = cfg.learner_names
        return [*super().generation_steps(cfg, r),
                [ScorePMI(round=r, peer=p) for p in learners],
                [Collect(round=r, table="pmi", schema=PMI_SCHEMA,
                         parts=tuple(f"pmi_{p}" for p in learners))]]

    def weights(self, ctx: RunContext, r: int, peer: str) -> dict[str, float]:
        pmi = read_table(ctx.part(r, f"pmi_{peer}"), PMI_SCHEMA)
        return dict(zip(pmi.column("question_id").to_pylist(), pmi.column("weight").to_pylist()))


class PSTPaper(PST):
    """PST as the third-party reading of the paper has it: the last responder's response is
    the reference, a sigmoid of PMI the weight, each model's own response its target."""

    name: Literal["pst-paper"] = "pst-paper"
    aggregate: AggregateConfig = Field(default_factory=lambda: AggregateConfig(rule="last"))
    pmi: PMIConfig = Field(default_factory=lambda: PMIConfig(transform="sigmoid",
                                                             standardize="raw"))
    target: Literal["reference", "own"] = "own"


class PSTRobust(PST):
    """PST that survives weak peers: reliability-weighted aggregate, unsure questions skipped."""

    name: Literal["pst-robust"] = "pst-robust"
    aggregate: AggregateConfig = Field(  # earliest: see pst_core.aggregate (copiers look reliable)
        default_factory=lambda: AggregateConfig(rule="reliable", min_share=0.5,
                                                representative="earliest"))


class PSTShuffled(PST):
    """pst's targets with its PMI weights permuted among each learner's examples of the round:
    the same weights, no link to the example, so pst against it isolates what the weights'
    assignment does (``pst-uniform`` removes the weights altogether)."""

    name: Literal["pst-shuffled"] = "pst-shuffled"

    def weights(self, ctx: RunContext, r: int, peer: str) -> dict[str, float]:
        weights = super().weights(ctx, r, peer)
        values = list(weights.values())
        random.Random(ctx.seed(r, peer)).shuffle(values)
        return dict(zip(weights, values))


class PSTUniform(PeerRounds):
    """PST with uniform weights: no PMI scoring (isolates what the weights do)."""

    name: Literal["pst-uniform"] = "pst-uniform"


@dataclass(frozen=True, kw_only=True)
class RankConsistency(Step):
    """Peers by label-free self-consistency on the first questions of the round's sample."""

    kind: ClassVar[str] = "rank-consistency"

    def output(self, ctx: RunContext) -> Path:
        return ctx.layout.consistency(self.round)

    def timing(self) -> str:
        return "consistency"

    def run(self, ctx: RunContext) -> None:
        method, gen, r = ctx.cfg.method, ctx.cfg.generation, self.round
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
        method = ctx.cfg.method
        earlier = [read_table(ctx.part(r, GenerateTurn(round=r, position=pos, peer=p).part),
                              RESPONSES_SCHEMA)
                   for pos in range(self.position) for p in method.turn_peers(ctx.cfg, pos)]
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
        table = estimate_reliability(responses, method=ctx.cfg.method.aggregate.reliability)
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
        rule = ctx.cfg.method.aggregate
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
        pmi_cfg, r = ctx.cfg.method.pmi, self.round
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
