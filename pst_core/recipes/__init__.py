"""Recipes: one module per method family that plans its rounds and holds its own steps, top to
bottom (``peers``: the PST family; ``solo``: SePT, majority; ``distill``). The methods' settings
are config sections in ``pst_core.methods``; the steps every family shares, and the training
and evaluation that end every round, are ``pst_core.steps``. Round 0 evaluates the untuned
peers and is the same for every method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pst_core.methods.distill import Distill
from pst_core.methods.pst import PeerRounds
from pst_core.recipes import distill, peers, solo
from pst_core.steps import evaluation_waves

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig
    from pst_core.steps import Step


def plan_round(cfg: ExperimentConfig, r: int) -> list[list[Step]]:
    """Round r's steps in waves: a wave runs after the previous one has finished, and its steps
    are independent (different peers), so an orchestrator may run them in parallel. Pure: it
    reads no file and loads no model."""
    if r == 0:
        return evaluation_waves(cfg, 0)
    if isinstance(cfg.method, PeerRounds):
        return peers.plan_round(cfg, r)
    if isinstance(cfg.method, Distill):
        return distill.plan_round(cfg, r)
    return solo.plan_round(cfg, r)


__all__ = ["plan_round"]
