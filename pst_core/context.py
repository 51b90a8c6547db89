"""What every step of a run may read: the config, the run's layout, and the tables earlier steps
wrote. Nothing here computes a stage; steps (``pst_core.steps``, and each method's own in
``pst_core.methods``) do, and the runner (``pst_core.runner``) decides which of them run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pst_core.models.backend import Backend, SamplingParams
from pst_core.models.checkpoint import is_checkpoint
from pst_core.models.loading import load_backend
from pst_core.schemas import DATASET_SCHEMA, QUESTIONS_SCHEMA
from pst_core.store import RunLayout, read_table

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig, PeerConfig
    from pst_core.data.spec import DatasetConfig

@dataclass(frozen=True)
class RunContext:
    """One run of an experiment config, as the steps see it."""

    cfg: ExperimentConfig

    @cached_property
    def layout(self) -> RunLayout:
        return RunLayout.for_run(self.cfg.output_dir, self.cfg.experiment, self.cfg.run_name)

    @cached_property
    def peers(self) -> dict[str, PeerConfig]:
        return {p.name: p for p in self.cfg.peers}

    def part(self, r: int, name: str) -> Path:
        """A per-peer (or per-turn) piece of round r's tables, collected into the round's file."""
        return self.layout.part(r, name)

    def dataset(self, spec: DatasetConfig) -> pa.Table:
        """An ingested dataset (all splits, gold included: only audit and evaluation read it)."""
        return read_table(self.layout.dataset(spec.name), DATASET_SCHEMA)

    def questions(self, r: int) -> pa.Table:
        """Round r's sample: id, question and answering order; no gold answers."""
        return read_table(self.layout.questions(r), QUESTIONS_SCHEMA)

    def checkpoint(self, peer: str, upto_round: int) -> Path | None:
        """The peer's latest checkpoint from rounds 1..upto_round, or None (the untuned model)."""
        for r in range(upto_round, 0, -1):
            if is_checkpoint(self.layout.checkpoint(r, peer)):
                return self.layout.checkpoint(r, peer)
        return None

    @contextmanager
    def backend(self, peer: PeerConfig, checkpoint: Path | None) -> Iterator[Backend]:
        """A loaded backend, released on exit so that the next model has the memory."""
        backend = load_backend(peer, checkpoint)
        try:
            yield backend
        finally:
            backend.close()

    def sampling(self, peer: str, r: int, **changes) -> SamplingParams:
        """The round's generation settings for ``peer`` (its own token budget if it has one)."""
        gen = self.cfg.generation
        params = dict(max_new_tokens=self.peers[peer].max_new_tokens or gen.max_new_tokens,
                      temperature=gen.temperature, top_p=gen.top_p, seed=self.cfg.seed + r)
        return SamplingParams(**(params | changes))

    def seed(self, r: int, peer: str) -> int:
        """A distinct, reproducible seed per (experiment seed, round, peer)."""
        return self.cfg.seed * 1000 + r * 10 + list(self.peers).index(peer)
