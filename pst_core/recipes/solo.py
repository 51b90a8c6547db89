"""The rounds of the methods whose models answer alone and train on their own answers, top to
bottom: ``sept`` (SePT: each learner's low-temperature answers, unweighted, unfiltered) and
``majority`` (LMSI / SRT style: its samples carrying its own majority answer, for questions
where that answer's share reaches ``min_agreement``). ``base`` trains nothing: its only round
is round 0's evaluation. Their settings: ``pst_core.methods``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from pst_core.methods.majority import Majority
from pst_core.schemas import RESPONSES_SCHEMA
from pst_core.steps import (
    CollectResponses,
    GenerateSolo,
    MakeTargets,
    SampleQuestions,
    Step,
    evaluation_waves,
    training_waves,
)
from pst_core.store import read_table
from pst_core.targets import majority_targets, own_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


def plan_round(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Round r: the sample; each learner answers alone (``majority``: n samples each); each
    trains on its own answers; every learner is evaluated."""
    method, learners = cfg.method, cfg.learner_names
    n = method.n_samples if isinstance(method, Majority) else 1
    return [[SampleQuestions(round=r)],
            [GenerateSolo(round=r, peer=p, temperature=method.temperature, n=n)
             for p in learners],
            [CollectResponses(round=r, parts=tuple(f"self_{p}" for p in learners))],
            *training_waves(cfg, r, lambda peer: OwnTargets(round=r, peer=peer)),
            *evaluation_waves(cfg, r)]


@dataclass(frozen=True, kw_only=True)
class OwnTargets(MakeTargets):
    """The learner's own answers: all of them (SePT), or the samples carrying its majority
    answer where it is frequent enough (majority)."""

    def make(self, ctx: RunContext) -> pa.Table:
        mine = read_table(ctx.part(self.round, f"self_{self.peer}"), RESPONSES_SCHEMA)
        method = ctx.cfg.method
        if isinstance(method, Majority):
            return majority_targets(mine, self.peer, method.min_agreement,
                                    method.responses_per_question)
        return own_targets(mine, self.peer)
