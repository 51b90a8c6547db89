"""Prefect tasks: each run calls exactly one pst_core stage and returns the path it wrote.

Tasks receive the experiment config as a JSON dict (small) and return paths, never tables or
models (Prefect would hold them in memory and pickle them). A stage whose output exists returns
at once, so a rerun skips finished work because the files exist, not because of Prefect's
input-hash cache (which hashes a path string, not the file behind it): caching is off.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pst_core.config import parse_config
from pst_core.pipeline import Experiment


def experiment(config: dict[str, Any]) -> Experiment:
    return Experiment(parse_config(config, source="flow parameter"))


@task(name="ingest", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def ingest_task(config: dict[str, Any]) -> list[str]:
    """Write the config and ingest every dataset of the run."""
    exp = experiment(config)
    exp.write_config()
    specs = [exp.cfg.data.pool, *exp.cfg.data.eval]
    for spec in specs:
        exp.dataset(spec)
    return [str(exp.layout.dataset(spec.name)) for spec in specs]


@task(name="stage", task_run_name="{stage} {args}", retries=2, retry_delay_seconds=10,
      cache_policy=NO_CACHE)
def stage_task(config: dict[str, Any], stage: str, args: tuple) -> str:
    """One unit of a round's plan (``Experiment.round_plan``): a stage for one round or peer."""
    return str(getattr(experiment(config), stage)(*args))


@task(name="track", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def track_task(config: dict[str, Any], r: int) -> None:
    """Log round r to MLflow. Its failure never touches the round's Parquet files."""
    from pst_core.tracking import MlflowTracker

    exp = experiment(config)
    MlflowTracker(exp.cfg.model_dump(mode="json"), exp.layout).log_round(exp.layout, r)
