"""``majority`` (self-consistency self-training, LMSI / SRT style): each model samples n answers
per question; the majority answer is the pseudo-label, and the model is fine-tuned on its own
samples that carry it, for questions where its share reaches ``min_agreement``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import Field

from pst_core.methods.method import Method
from pst_core.schemas import RESPONSES_SCHEMA
from pst_core.steps import CollectResponses, GenerateSolo
from pst_core.store import read_table
from pst_core.targets import majority_targets

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext


class Majority(Method):
    """Each model trains on its own samples carrying its majority answer."""

    name: Literal["majority"] = "majority"
    n_samples: int = Field(4, ge=2, description="Samples per question.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature.")
    min_agreement: float = Field(
        0.5, gt=0, le=1, description="Skip questions whose majority answer has a smaller share "
        "of the samples.")
    responses_per_question: int = Field(
        1, ge=1, description="Training responses per question, taken from the samples carrying "
        "the majority answer (1 keeps the budget equal to the other methods).")

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list]:
        learners = cfg.learner_names
        solo = [GenerateSolo(round=r, peer=p, temperature=self.temperature, n=self.n_samples)
                for p in learners]
        return [solo, [CollectResponses(round=r, parts=tuple(f"self_{p}" for p in learners))]]

    def targets(self, ctx: RunContext, r: int, peer: str) -> pa.Table:
        mine = read_table(ctx.part(r, f"self_{peer}"), RESPONSES_SCHEMA)
        return majority_targets(mine, peer, self.min_agreement, self.responses_per_question)
