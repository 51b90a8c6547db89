"""Plans a run's steps and runs them: the one place that decides what is skipped on resume.

A run is: write its config, ingest its datasets, then round 0 (evaluate the untuned peers) and
rounds 1..R, each on a fresh sample of the pool with the peers refreshed by the previous round's
training (online refresh). The method's recipe plans each round (``pst_core.recipes.plan_round``:
pure, it reads no file and loads no model), in waves whose steps are independent (different
peers), so an orchestrator may run a wave's steps in parallel. ``run_step`` skips a step whose output is
complete and records the wall time and peak resident memory of each step it runs. Every step
writes atomically, so killing the process anywhere and running the same command again finishes
the run without recomputing finished work and without losing or duplicating rows. A run
directory is bound to the config that made it (``pst_core.checks``) and held by one process at
a time (``pst_core.store.run_lock``).

The Prefect flows (``flows/pipeline.py``) run the same plan with one task per step; ``pst run
--no-prefect`` runs it here, in this process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from pst_core.checks import check_inputs
from pst_core.config import ExperimentConfig
from pst_core.context import RunContext
from pst_core.models.checkpoint import remove_stale_checkpoints
from pst_core.models.memory import release_memory
from pst_core.peak_memory import peak_gib, reset_peak
from pst_core.provenance import record_invocation
from pst_core.recipes import plan_round
from pst_core.steps import Ingest, Step
from pst_core.store import RunLayout, atomic_path, remove_stale_temporaries, run_lock
from pst_core.tracking import NullTracker, Tracker

log = logging.getLogger(__name__)

Wave = Sequence[Step]


def plan_setup(cfg: ExperimentConfig) -> list[Step]:
    """Ingest the pool and every eval benchmark (independent of each other)."""
    return [Ingest(round=0, spec=spec) for spec in (cfg.data.pool, *cfg.data.eval)]


def run_step(ctx: RunContext, step: Step) -> Path:
    """Run ``step`` unless its output is complete; record its wall time and peak RSS (GiB,
    ``pst_core.peak_memory``) when it ran."""
    if step.done(ctx):
        log.debug("%s: done, skipped", step.title)
        return step.output(ctx)
    log.info("%s", step.title)
    release_memory()  # what earlier steps freed goes back to the system: peaks start clean
    reset_peak()
    start = time.perf_counter()
    step.run(ctx)
    stage = step.timing()
    if stage is not None:
        peer = getattr(step, "peer", None)
        record = {"stage": stage, "peer": peer, "wall_s": time.perf_counter() - start,
                  "rss_gb": peak_gib()}
        name = f"{stage.replace('/', '_')}{'_' + peer if peer else ''}.json"
        with atomic_path(ctx.layout.timings(step.round) / name) as tmp:
            tmp.write_text(json.dumps(record))
    return step.output(ctx)


def run_wave_here(ctx: RunContext, wave: Wave) -> None:
    """The plain executor: one step after another, one model in memory at a time."""
    for step in wave:
        run_step(ctx, step)


class Runner:
    """Runs (or resumes) an experiment: setup, then every round, each logged to ``tracker``.

    Args:
        cfg: the experiment config.
        tracker: where each finished round is logged; a failure there is logged as a warning
            and never stops the run (the Parquet files are the record; ``pst track`` redoes it).
        run_wave: how a wave of independent steps is executed (Prefect submits tasks).
    """

    def __init__(self, cfg: ExperimentConfig, tracker: Tracker | None = None,
                 run_wave: Callable[[RunContext, Wave], None] = run_wave_here):
        self.ctx = RunContext(cfg)
        self.tracker = tracker or NullTracker()
        self.run_wave = run_wave

    @property
    def layout(self) -> RunLayout:
        return self.ctx.layout

    def run(self, run_round: Callable[[int], None] | None = None) -> RunLayout:
        """Setup, then rounds ``first_round..rounds`` (``run_round`` defaults to ``self.round``)."""
        cfg = self.ctx.cfg
        check_inputs(cfg)  # before the lock file: a refused run writes nothing
        with run_lock(self.layout.root):
            self.setup()
            for r in range(cfg.first_round, cfg.rounds + 1):
                (run_round or self.round)(r)
                try:
                    self.tracker.log_round(self.layout, r)
                except Exception as e:  # noqa: BLE001 - tracking never stops a run
                    log.warning("tracking round %d failed (%s); log it later with `pst track %s`",
                                r, e, self.layout.root)
        self.tracker.close()
        return self.layout

    def setup(self) -> None:
        """Check the inputs (a run directory made under another config is refused); remove what
        a killed run left half-written; then the run's config.yaml, a record of this invocation,
        and its ingested datasets."""
        check_inputs(self.ctx.cfg)
        for stale in remove_stale_temporaries(self.layout.root) + remove_stale_checkpoints(
                self.layout.root):
            log.info("removed %s (left by a killed run)", stale)
        path = self.layout.config
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.ctx.cfg.model_dump(mode="json"), sort_keys=False))
        record_invocation(self.layout.root)
        self.run_wave(self.ctx, plan_setup(self.ctx.cfg))

    def round(self, r: int) -> None:
        for wave in plan_round(self.ctx.cfg, r):
            self.run_wave(self.ctx, wave)
