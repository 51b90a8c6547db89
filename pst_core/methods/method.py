"""What a method is as configuration: its section of the experiment config (told apart by
``name``), what it trains, and the config checks it needs. What its rounds do is its recipe
(``pst_core.recipes``). To add a method: a section here (``pst_core.methods``), one line in
``REGISTRY``, and its recipe (or a branch of an existing one).
"""

from __future__ import annotations

from typing import ClassVar

from pst_core.section import Section


class Method(Section):
    """A method's config section; ``name`` (a ``Literal``) tells the methods apart."""

    name: str
    trains: ClassVar[bool] = True  # False: the method is its round 0 evaluation (base)
    taught_by: ClassVar[str] = "self"  # whose answers make the targets: "self" or "peers"

    @property
    def eval_temperatures(self) -> tuple[float, ...]:
        """Temperatures evaluated besides greedy decoding (base sweeps them)."""
        return ()

    def check(self, peers: list[str], learners: list[str], rounds: int,
              initial: bool) -> str | None:
        """What is wrong for this method (one sentence), or None, given the experiment's peer
        names, its learners, its number of rounds and whether round 0 is evaluated
        (``eval.initial``)."""
        return None
