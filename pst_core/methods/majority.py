"""``majority`` (self-consistency self-training, LMSI / SRT style): each model samples n answers
per question; the majority answer is the pseudo-label, and the model is fine-tuned on its own
samples that carry it, for questions where its share reaches ``min_agreement`` (its rounds:
``pst_core.recipes.solo``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pst_core.methods.method import Method


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
