"""What a method is: its config section, the steps of its rounds, and how it makes targets.

Every method ends a round the same way (weighted SFT on (solo prompt(x) -> target), then the
same evaluation), so a method declares only what differs: the steps that produce its responses
(``generation_steps``), the training targets it makes from them (``targets``), and, for PST,
the answering order and what must run before the round's sample is drawn. The runner
(``pst_core.runner``) plans everything else. To add a method: one module with a ``Method``
subclass, and one line in ``pst_core.methods.REGISTRY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from pst_core.section import Section

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.context import RunContext
    from pst_core.steps import Step


class Method(Section):
    """A method's config section; ``name`` (a ``Literal``) tells the methods apart."""

    name: str
    trains: ClassVar[bool] = True  # False: the method is its round 0 evaluation (base)
    taught_by: ClassVar[str] = "self"  # whose answers make the targets: "self" or "peers"

    @property
    def eval_temperatures(self) -> tuple[float, ...]:
        """Temperatures evaluated besides greedy decoding (base sweeps them)."""
        return ()

    def check(self, cfg: ExperimentConfig) -> str | None:
        """What is wrong with ``cfg`` for this method (one sentence), or None."""
        return None

    def before_sample(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        """Waves of steps that must run before round r's questions are written."""
        return []

    def answering_orders(self, ctx: RunContext, r: int, ids: list[str]) -> dict[str, list[str]]:
        """Question id -> the order in which the peers answer it; empty when they answer alone."""
        return {}

    def generation_steps(self, cfg: ExperimentConfig, r: int) -> list[list[Step]]:
        """Waves of steps from round r's questions to its ``responses.parquet`` (and, for PST,
        aggregates and PMI): the steps of a wave are independent (different peers)."""
        raise NotImplementedError

    def targets(self, ctx: RunContext, r: int, peer: str) -> pa.Table:
        """``peer``'s training targets of round r (``TARGETS_SCHEMA``, ``gold_match`` null)."""
        raise NotImplementedError
