"""``distill``: each learner trains on one teacher peer's own answers, alone (no chain, no vote).

The control for PST's claim of gains "with no teacher-student hierarchy": where one peer is much
stronger than the others, PST's aggregate is mostly that peer's answer, and PST may be no more
than distilling it. The teacher is named in the config and chosen without labels (``pst
preflight`` ranks the peers by estimated reliability). Its responses that give no answer or are
cut off at the token limit are not targets (``pst_core.targets.teacher_targets``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from pst_core.methods.method import Method
from pst_core.schemas import RESPONSES_SCHEMA
from pst_core.steps import CollectResponses, GenerateSolo
from pst_core.store import read_table
from pst_core.targets import teacher_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


class Distill(Method):
    """Each learner trains on the teacher peer's solo answers."""

    name: Literal["distill"] = "distill"
    teacher: str = Field(
        ..., description="The peer whose solo answers every learner trains on (not a learner); "
        "pick it without labels, e.g. the peer `pst preflight` estimates most reliable.")
    temperature: float = Field(
        0.0, ge=0, description="Temperature of the teacher's answers (0: greedy, as the first "
        "peer of a PST chain answers).")

    taught_by: ClassVar[str] = "peers"

    def check(self, cfg: ExperimentConfig) -> str | None:
        names = [p.name for p in cfg.peers]
        if self.teacher not in names:
            return f"method.teacher {self.teacher!r} is not a peer ({', '.join(names)})"
        if self.teacher in cfg.learner_names:
            return (f"method.teacher {self.teacher!r} is also a learner: set learners to the "
                    "peers it teaches")
        return None

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list]:
        return [[GenerateSolo(round=r, peer=self.teacher, temperature=self.temperature)],
                [CollectResponses(round=r, parts=(f"self_{self.teacher}",))]]

    def targets(self, ctx: RunContext, r: int, peer: str) -> pa.Table:
        return teacher_targets(read_table(ctx.part(r, f"self_{self.teacher}"), RESPONSES_SCHEMA),
                               peer)
