"""``sept`` (SePT, "A Model Can Help Itself"): each model answers the round's questions alone at
a low temperature and is fine-tuned on its own responses, unweighted and unfiltered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import Field

from pst_core.methods.method import Method
from pst_core.schemas import RESPONSES_SCHEMA
from pst_core.steps import CollectResponses, GenerateSolo
from pst_core.store import read_table
from pst_core.targets import own_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


class SePT(Method):
    """Each model trains on its own low-temperature responses."""

    name: Literal["sept"] = "sept"
    temperature: float = Field(
        0.3, ge=0, description="Temperature of the model's own training responses (low, and "
        "decoupled from eval.temperature).")

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list]:
        learners = cfg.learner_names
        return [[GenerateSolo(round=r, peer=p, temperature=self.temperature) for p in learners],
                [CollectResponses(round=r, parts=tuple(f"self_{p}" for p in learners))]]

    def targets(self, ctx: RunContext, r: int, peer: str) -> pa.Table:
        return own_targets(read_table(ctx.part(r, f"self_{peer}"), RESPONSES_SCHEMA), peer)
