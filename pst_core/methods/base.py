"""``base``: no training; the untuned models evaluated at several decoding temperatures, the
best of which is reported (as the SePT paper does for its baseline)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from pst_core.methods.method import Method


class Base(Method):
    """No training: the untuned models at their best decoding temperature."""

    name: Literal["base"] = "base"
    temperatures: tuple[float, ...] = Field(
        (0.0, 0.3, 0.6, 1.0), min_length=1,
        description="Decoding temperatures swept; the best is reported (as SePT does).")

    trains: ClassVar[bool] = False

    @property
    def eval_temperatures(self) -> tuple[float, ...]:
        return self.temperatures

    def check(self, peers: list[str], learners: list[str], rounds: int,
              initial: bool) -> str | None:
        if rounds != 0:
            return "method base trains nothing: set rounds: 0"
        if not initial:
            return "method base is its round 0 evaluation: set eval.initial: true"
        return None
