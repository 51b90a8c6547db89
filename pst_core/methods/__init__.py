"""The methods, as configuration: each is a section of the experiment config (its settings and
checks), told apart by ``name``; what its rounds do is its recipe (``pst_core.recipes``).
``REGISTRY`` lists them in the order reports show them. Adding a method: its section here, one
line below, and its recipe.
"""

from typing import Annotated, Union

from pydantic import Field

from pst_core.methods.base import Base
from pst_core.methods.distill import Distill
from pst_core.methods.majority import Majority
from pst_core.methods.method import Method
from pst_core.methods.pst import PST, PSTPaper, PSTRobust, PSTShuffled, PSTUniform
from pst_core.methods.sept import SePT

REGISTRY: dict[str, type[Method]] = {
    "base": Base,
    "pst": PST,
    "pst-uniform": PSTUniform,
    "pst-shuffled": PSTShuffled,
    "pst-paper": PSTPaper,
    "pst-robust": PSTRobust,
    "sept": SePT,
    "majority": Majority,
    "distill": Distill,
}

MethodConfig = Annotated[Union[tuple(REGISTRY.values())], Field(discriminator="name")]  # noqa: UP007

__all__ = ["REGISTRY", "Method", "MethodConfig"]
