"""Prefect flows: ``pst-round`` runs one round's stages as tasks; ``pst-pipeline`` runs round 0
(evaluation of the untuned peers) and rounds 1..R, then logs each round to MLflow.

The pipeline's parameters are the experiment config: a path to a YAML file (``config_path``),
``key.path=value`` overrides, or the whole config inline (``config``), which the Prefect UI shows
as a form. Turns of one answering position, and the per-peer scoring, training and evaluation,
are independent tasks: with ``parallel=True`` they are submitted together, so a Dask or Ray task
runner (``pip install prefect-dask`` / ``prefect-ray``) can place them on different GPUs:

    from prefect_ray import RayTaskRunner
    round_flow.with_options(task_runner=RayTaskRunner())

On one CPU the default (``parallel=False``) runs them one after another, one model in memory.

(No ``from __future__ import annotations`` here: a served flow builds its parameter model from
the annotations in a fresh process, and string annotations left ``ExperimentConfig`` unresolved.)
"""


import logging
from typing import Any

from prefect import flow, get_run_logger

from flows.tasks import (
    aggregate_task,
    collect_eval_task,
    collect_pmi_task,
    collect_responses_task,
    collect_train_log_task,
    evaluate_task,
    experiment,
    generate_task,
    ingest_task,
    metrics_task,
    score_task,
    track_task,
    train_task,
)
from pst_core.config import ExperimentConfig, load_config, parse_config
from pst_core.tracking import apply_offline_env

apply_offline_env()


def _each(task, config: dict, args: list[tuple], parallel: bool) -> list[str]:
    """Run ``task`` once per argument tuple: submitted together, or one after another."""
    if parallel:
        futures = [task.submit(config, *a) for a in args]
        return [f.result() for f in futures]
    return [task(config, *a) for a in args]


@flow(name="pst-round", flow_run_name="round {r}")
def round_flow(config: dict[str, Any], r: int, parallel: bool = False) -> str:
    """Round r: peers -> aggregate -> PMI -> train -> evaluate (round 0: evaluate only)."""
    exp = experiment(config)
    peers = list(exp.peers)
    if r > 0:
        for position in range(len(peers)):
            _each(generate_task, config, [(r, position, p) for p in exp.turn_peers(r, position)],
                  parallel)
        collect_responses_task(config, r)
        aggregate_task(config, r)
        _each(score_task, config, [(r, p) for p in peers], parallel)
        collect_pmi_task(config, r)
        _each(train_task, config, [(r, p) for p in peers], parallel)
        collect_train_log_task(config, r)
    _each(evaluate_task, config, [(r, p) for p in peers], parallel)
    collect_eval_task(config, r)
    return metrics_task(config, r)


@flow(name="pst-pipeline")
def pipeline_flow(
    config_path: str | None = "data/configs/demo.yaml",
    overrides: list[str] | None = None,
    config: ExperimentConfig | None = None,
    parallel: bool = False,
    track: bool = True,
) -> str:
    """Run (or resume) an experiment; returns its run directory.

    Args:
        config_path: experiment YAML (ignored when ``config`` is given).
        overrides: ``key.path=value`` overrides applied to the YAML.
        config: the whole experiment config inline (the UI's form).
        parallel: submit independent per-peer tasks together (for multi-GPU task runners).
        track: log every round to MLflow (``MLFLOW_TRACKING_URI``, else runs/mlflow.db).
    """
    cfg = resolve_config(config_path, overrides, config)
    payload = cfg.model_dump(mode="json")
    logger = get_run_logger()
    logger.info("run directory: %s", experiment(payload).layout.root)
    ingest_task(payload)
    for r in range(cfg.rounds + 1):
        round_flow(payload, r, parallel)
        if track:
            try:
                track_task(payload, r)
            except Exception as e:  # the Parquet files are complete; `pst track` can redo this
                logger.warning("MLflow logging of round %d failed (%s); run `pst track %s`",
                               r, e, experiment(payload).layout.root)
    return str(experiment(payload).layout.root)


def resolve_config(
    config_path: str | None, overrides: list[str] | None, config: ExperimentConfig | dict | None
) -> ExperimentConfig:
    if config is not None:
        if isinstance(config, ExperimentConfig):
            return config
        return parse_config(config, source="flow parameter `config`")
    if not config_path:
        raise ValueError("give config_path or config")
    return load_config(config_path, overrides or [])


logging.getLogger("pst_core").setLevel(logging.INFO)
