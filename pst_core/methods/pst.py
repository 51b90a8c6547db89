"""The PST family's config sections: ``pst``, its ablations ``pst-uniform`` (no weights) and
``pst-shuffled`` (weights permuted), the paper's reading ``pst-paper`` and ``pst-robust``
(beyond the paper). What their rounds do is ``pst_core.recipes.peers``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pst_core.aggregate import REPRESENTATIVES
from pst_core.methods.method import Method
from pst_core.section import Section


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
    aggregate, and targets (the reference, or each peer's own turn), weighted as ``weighs``
    says."""

    taught_by: ClassVar[str] = "peers"
    weighs: ClassVar[Literal["pmi", "shuffled", "uniform"]] = "uniform"
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

    def check(self, peers: list[str], learners: list[str], rounds: int,
              initial: bool) -> str | None:
        if len(peers) < 2:
            return f"method {self.name} needs at least 2 peers, got {len(peers)}"
        return None


class PST(PeerRounds):
    """Peers answer in turn; their aggregate is every target, weighted by PMI."""

    name: Literal["pst"] = "pst"
    pmi: PMIConfig = Field(default_factory=PMIConfig)
    weighs: ClassVar[Literal["pmi", "shuffled", "uniform"]] = "pmi"


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
    weighs: ClassVar[Literal["pmi", "shuffled", "uniform"]] = "shuffled"


class PSTUniform(PeerRounds):
    """PST with uniform weights: no PMI scoring (isolates what the weights do)."""

    name: Literal["pst-uniform"] = "pst-uniform"
