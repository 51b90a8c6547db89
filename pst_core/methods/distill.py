"""``distill``: each learner trains on one teacher peer's own answers, alone (no chain, no vote).

The control for PST's claim of gains "with no teacher-student hierarchy": where one peer is much
stronger than the others, PST's aggregate is mostly that peer's answer, and PST may be no more
than distilling it. The teacher is named in the config and chosen without labels (``pst
preflight`` ranks the peers by estimated reliability). Its responses that give no answer or are
cut off at the token limit are not targets (``pst_core.targets.teacher_targets``). Its rounds:
``pst_core.recipes.distill``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from pst_core.methods.method import Method


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

    def check(self, peers: list[str], learners: list[str], rounds: int,
              initial: bool) -> str | None:
        if self.teacher not in peers:
            return f"method.teacher {self.teacher!r} is not a peer ({', '.join(peers)})"
        if self.teacher in learners:
            return (f"method.teacher {self.teacher!r} is also a learner: set learners to the "
                    "peers it teaches")
        return None
