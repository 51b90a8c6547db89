"""``sept`` (SePT, "A Model Can Help Itself"): each model answers the round's questions alone at
a low temperature and is fine-tuned on its own responses, unweighted and unfiltered (its rounds:
``pst_core.recipes.solo``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pst_core.methods.method import Method


class SePT(Method):
    """Each model trains on its own low-temperature responses."""

    name: Literal["sept"] = "sept"
    temperature: float = Field(
        0.3, ge=0, description="Temperature of the model's own training responses (low, and "
        "decoupled from eval.temperature).")
