"""Prefect tasks: each calls exactly one pst_core stage and returns the path it wrote.

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

RETRIES = {"retries": 2, "retry_delay_seconds": 10, "cache_policy": NO_CACHE}


def experiment(config: dict[str, Any]) -> Experiment:
    return Experiment(parse_config(config, source="flow parameter"))


@task(name="ingest", **RETRIES)
def ingest_task(config: dict[str, Any]) -> list[str]:
    exp = experiment(config)
    exp.write_config()
    specs = [exp.cfg.data.pool, *exp.cfg.data.eval]
    for spec in specs:
        exp.dataset(spec)
    return [str(exp.layout.dataset(spec.name)) for spec in specs]


@task(name="generate", task_run_name="generate r{r} turn{position} {peer}", **RETRIES)
def generate_task(config: dict[str, Any], r: int, position: int, peer: str) -> str:
    return str(experiment(config).generate_turn(r, position, peer))


@task(name="collect-responses", **RETRIES)
def collect_responses_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).collect_responses(r))


@task(name="aggregate", **RETRIES)
def aggregate_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).aggregate(r))


@task(name="score", task_run_name="score r{r} {peer}", **RETRIES)
def score_task(config: dict[str, Any], r: int, peer: str) -> str:
    return str(experiment(config).score_peer(r, peer))


@task(name="collect-pmi", **RETRIES)
def collect_pmi_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).collect_pmi(r))


@task(name="train", task_run_name="train r{r} {peer}", **RETRIES)
def train_task(config: dict[str, Any], r: int, peer: str) -> str:
    return str(experiment(config).train_peer(r, peer))


@task(name="collect-train-log", **RETRIES)
def collect_train_log_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).collect_train_log(r))


@task(name="evaluate", task_run_name="evaluate r{r} {peer}", **RETRIES)
def evaluate_task(config: dict[str, Any], r: int, peer: str) -> str:
    return str(experiment(config).evaluate_peer(r, peer))


@task(name="collect-eval", **RETRIES)
def collect_eval_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).collect_eval(r))


@task(name="metrics", **RETRIES)
def metrics_task(config: dict[str, Any], r: int) -> str:
    return str(experiment(config).metrics(r))


@task(name="track", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def track_task(config: dict[str, Any], r: int) -> None:
    """Log round r to MLflow. Its failure never touches the round's Parquet files."""
    from pst_core.tracking import MlflowTracker

    exp = experiment(config)
    MlflowTracker(exp.cfg.model_dump(mode="json"), exp.layout).log_round(exp.layout, r)
