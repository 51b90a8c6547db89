"""Prefect flows: ``pst-pipeline`` runs an experiment through ``pst_core.runner.Runner`` (the same
runner as ``pst run --no-prefect``): its setup, then one ``pst-round`` subflow per round, each
logged to MLflow after it finishes; ``pst-round`` runs the round's plan with one task per step,
named after it (``generate turn 1 qwen-0.5b``); ``pst-compare`` compares finished runs.

The pipeline's parameters are the experiment config: a path to a YAML file (``config_path``),
``key.path=value`` overrides, or the whole config inline (``config``), which the Prefect UI shows
as a form. The steps of one wave (the turns of one answering position, scoring, training,
evaluation per peer and benchmark) are independent: with ``parallel=True`` they are submitted together,
to Prefect's default thread pool, or with ``task_runner="dask"`` to a local Dask cluster of
``dask_workers`` processes (``pip install -e ".[dask]"``), one step per process: peers placed on
different GPUs (``peers[].device: cuda:N``) then train and evaluate at the same time. Another
runner (Ray, a remote Dask scheduler) is one ``with_options`` away:

    from prefect_ray import RayTaskRunner
    round_flow.with_options(task_runner=RayTaskRunner())

On one CPU the default (``parallel=False``) runs them one after another, one model in memory.

(No ``from __future__ import annotations`` here: a served flow builds its parameter model from
the annotations in a fresh process, and string annotations left ``ExperimentConfig`` unresolved.)
"""


import logging
from typing import Any, Literal

from prefect import flow, get_run_logger

from flows.artifacts import PrefectArtifacts
from flows.tasks import prefect_waves
from pst_core.config import ExperimentConfig, load_config, parse_config
from pst_core.errors import ConfigError
from pst_core.runner import Runner
from pst_core.tracking import Trackers, apply_offline_env, open_tracker

apply_offline_env()


@flow(name="pst-round", flow_run_name="round {r}")
def round_flow(config: dict[str, Any], r: int, parallel: bool = False) -> str:
    """Round r's plan (``pst_core.runner.plan_round``), one task per step, wave by wave."""
    runner = Runner(parse_config(config, source="flow parameter"),
                    run_wave=prefect_waves(config, parallel))
    runner.round(r)
    return str(runner.layout.round_dir(r))


@flow(name="pst-pipeline")
def pipeline_flow(
    config_path: str | None = "data/configs/demo.yaml",
    overrides: list[str] | None = None,
    config: ExperimentConfig | None = None,
    parallel: bool = False,
    track: bool = True,
    task_runner: Literal["default", "dask"] = "default",
    dask_workers: int = 2,
) -> str:
    """Run (or resume) an experiment; returns its run directory.

    Args:
        config_path: experiment YAML (ignored when ``config`` is given).
        overrides: ``key.path=value`` overrides applied to the YAML.
        config: the whole experiment config inline (the UI's form).
        parallel: submit independent per-peer tasks together (for multi-GPU task runners).
        track: log every round to MLflow (``MLFLOW_TRACKING_URI``, else runs/mlflow.db).
        task_runner: where each round's tasks run: ``default`` (Prefect's thread pool, in this
            process) or ``dask`` (a local Dask cluster of worker processes; implies ``parallel``).
        dask_workers: processes of the Dask cluster (one step, one model each at a time).
    """
    cfg = resolve_config(config_path, overrides, config)
    payload = cfg.model_dump(mode="json")
    runner = Runner(cfg, tracker=Trackers(open_tracker(cfg, enabled=track), PrefectArtifacts()),
                    run_wave=prefect_waves(payload, parallel))
    get_run_logger().info("run directory: %s", runner.layout.root)
    rounds = round_flow
    if task_runner == "dask":
        rounds, parallel = round_flow.with_options(task_runner=dask_runner(dask_workers)), True
    runner.run(run_round=lambda r: rounds(payload, r, parallel))
    return str(runner.layout.root)


def dask_runner(workers: int):
    """A Dask task runner over a local cluster of ``workers`` single-threaded processes."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("task_runner 'dask' needs prefect-dask: pip install -e '.[dask]'") from None
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "processes": True,
                                         "threads_per_worker": 1, "dashboard_address": None})


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


@flow(name="pst-compare")
def compare_flow(
    run_dirs: list[str], out: str = "docs/RESULTS.md", notes: str | None = None,
    track: bool = True, prereg: str | None = None,
) -> dict[str, str]:
    """Compare finished runs (``pst compare``): Markdown + CSV + plot, and an MLflow run.

    Args:
        run_dirs: run directories (runs/<experiment>/<run>) of one config set, one of them base.
        out: the Markdown report; the CSV and plot are written beside it.
        notes: a Markdown file inserted verbatim as "What it means".
        track: log the comparison to MLflow (``MLFLOW_TRACKING_URI``, else runs/mlflow.db).
        prereg: a pre-registration's questions (YAML), answered first.
    """
    from pst_core.report import publish

    return {kind: str(path)
            for kind, path in publish(run_dirs, out, notes, track, prereg).items()}


logging.getLogger("pst_core").setLevel(logging.INFO)
