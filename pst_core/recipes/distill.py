"""The ``distill`` control's rounds, top to bottom: the teacher peer answers the round's
questions alone; every learner trains on those answers (those that give an answer and
finished, ``pst_core.targets.teacher_targets``); every learner is evaluated. Its settings:
``pst_core.methods.distill``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from pst_core.methods.distill import Distill
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
from pst_core.targets import teacher_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


def plan_round(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Round r: the sample, the teacher's answers, every learner trained on them, evaluated."""
    teacher = cfg.method.teacher
    return [[SampleQuestions(round=r)],
            [GenerateSolo(round=r, peer=teacher, temperature=cfg.method.temperature)],
            [CollectResponses(round=r, parts=(f"self_{teacher}",))],
            *training_waves(cfg, r, lambda peer: TeacherTargets(round=r, peer=peer)),
            *evaluation_waves(cfg, r)]


@dataclass(frozen=True, kw_only=True)
class TeacherTargets(MakeTargets):
    """The teacher's usable answers, as ``peer``'s targets."""

    def make(self, ctx: RunContext) -> pa.Table:
        method = ctx.cfg.method
        assert isinstance(method, Distill), method.name  # the plan put this step here
        taught = read_table(ctx.part(self.round, f"self_{method.teacher}"), RESPONSES_SCHEMA)
        return teacher_targets(taught, self.peer)
