"""MLflow tracking of a run, read back from its Parquet files after each round.

One MLflow run per pipeline run (tagged with its run directory, so a resumed run continues the
same MLflow run), with nested child runs: one per round (its Parquet files as artifacts) and one
per peer (its metrics with the round as step, and its checkpoints). The parent holds the
flattened config as params, round-wide metrics by round, and plots.

Tracking reads only what the stages already wrote, after they wrote it: a tracking server that
fails loses no Parquet data, and ``pst track RUN_DIR`` logs the missing rounds later. This is the
only pst_core module that imports mlflow (lazily, inside functions); other modules that log to
MLflow (``pst_core.report``'s comparison run) get their client and experiment from
``mlflow_client`` and ``get_or_create_experiment``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from pst_core.evaluate import METRICS_SCHEMA
from pst_core.store import RunLayout, read_table

log = logging.getLogger(__name__)

# The settings STACK.md measured to keep Prefect and MLflow from calling home.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",  # the string "true": MLflow ignores "1"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_offline_env() -> None:
    """Set the offline/telemetry variables unless the user set them."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def default_tracking_uri(output_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else an sqlite database in the runs directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(Path(output_dir).resolve() / 'mlflow.db')}"
    )


def mlflow_client(tracking_uri: str):
    """An ``MlflowClient`` for ``tracking_uri``, with the offline settings applied first."""
    apply_offline_env()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def get_or_create_experiment(client, name: str, output_dir: str | Path) -> str:
    """The id of experiment ``name``; created if missing, with its artifacts stored under
    ``<output_dir>/mlartifacts`` (a ``file://`` URI, as STACK.md recommends)."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    artifacts = (Path(output_dir).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


class Tracker(Protocol):
    """Where a run's results go after each round."""

    def log_round(self, layout: RunLayout, round_index: int) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    """Tracks nothing (the library used from a notebook, or tracking turned off)."""

    def log_round(self, layout: RunLayout, round_index: int) -> None:
        return None

    def close(self) -> None:
        return None


def open_tracker(cfg, enabled: bool = True) -> Tracker:
    """An ``MlflowTracker`` for the run of ``cfg`` (an ``ExperimentConfig``), or a
    ``NullTracker`` when tracking is off or MLflow cannot be reached (a warning says how to log
    the run later): tracking never stops a run, the Parquet files are the record."""
    if not enabled:
        return NullTracker()
    layout = RunLayout.for_run(cfg.output_dir, cfg.experiment, cfg.run_name)
    try:
        return MlflowTracker(cfg.model_dump(mode="json"), layout)
    except Exception as e:  # noqa: BLE001
        log.warning("MLflow unavailable (%s); log the run later with `pst track %s`",
                    e, layout.root)
        return NullTracker()


class MlflowTracker:
    """Logs a run to MLflow: a parent run, child runs per round and per peer.

    Args:
        config: the experiment config as a JSON-able dict (params are its flattened fields).
        layout: the run's directory layout.
        tracking_uri: MLflow tracking URI; default ``default_tracking_uri(output_dir)``.
    """

    def __init__(self, config: dict[str, Any], layout: RunLayout, tracking_uri: str | None = None):
        self.uri = tracking_uri or default_tracking_uri(config["output_dir"])
        self.client = mlflow_client(self.uri)
        self.layout = layout
        self.rounds = config["rounds"]
        self.experiment_id = get_or_create_experiment(
            self.client, config["experiment"], config["output_dir"])
        self.parent_id = self._find_or_create(
            {"pst.run_dir": str(layout.root.resolve()), "pst.kind": "pipeline"},
            run_name=layout.root.name,
        )
        if not self.client.get_run(self.parent_id).data.params:
            for key, value in flatten(config).items():
                self.client.log_param(self.parent_id, key, str(value)[:6000])
            self._log_file(self.parent_id, layout.root / "config.yaml", None)

    def _find_or_create(self, tags: dict[str, str], run_name: str, parent: str | None = None) -> str:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        if found:
            return found[0].info.run_id
        if parent is not None:
            tags = {**tags, "mlflow.parentRunId": parent}
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_round(self, layout: RunLayout, round_index: int) -> None:
        """Log round r's metrics, Parquet files, checkpoints and plots (once per round)."""
        r = round_index
        done_tag = f"pst.round_{r}.logged"
        if self.client.get_run(self.parent_id).data.tags.get(done_tag) == "true":
            return
        run_dir = str(layout.root.resolve())
        metrics = read_table(layout.metrics(r), METRICS_SCHEMA).to_pylist()
        round_run = self._find_or_create(
            {"pst.run_dir": run_dir, "pst.kind": "round", "pst.round": str(r)},
            run_name=f"round_{r}", parent=self.parent_id)
        for path in sorted(layout.round_dir(r).glob("*.parquet")):
            self._log_file(round_run, path, None)
        for m in metrics:
            if m["peer"] is None and m["value"] is not None:
                self.client.log_metric(self.parent_id, m["name"], m["value"], step=r)
                self.client.log_metric(round_run, m["name"], m["value"], step=r)
        for peer in sorted({m["peer"] for m in metrics if m["peer"] is not None}):
            peer_run = self._find_or_create(
                {"pst.run_dir": run_dir, "pst.kind": "peer", "pst.peer": peer},
                run_name=f"peer_{peer}", parent=self.parent_id)
            for m in metrics:
                if m["peer"] == peer and m["value"] is not None:
                    key = m["name"] if m["benchmark"] is None else f"{m['name']}/{m['benchmark']}"
                    self.client.log_metric(peer_run, key, m["value"], step=r)
            checkpoint = layout.checkpoint(r, peer)
            if checkpoint.is_dir():
                self.client.log_artifacts(peer_run, str(checkpoint), f"checkpoints/round_{r}")
        self.client.set_terminated(round_run)
        self._log_plots(layout, r)
        self.client.set_tag(self.parent_id, done_tag, "true")
        if r == self.rounds:
            self.finish()

    def _log_plots(self, layout: RunLayout, r: int) -> None:
        from pst_core.plots import plot_pmi, plot_rounds

        with tempfile.TemporaryDirectory() as tmp:
            for figure_path in [plot_rounds(layout, Path(tmp)), *plot_pmi(layout, r, Path(tmp))]:
                if figure_path is not None:
                    self.client.log_artifact(self.parent_id, str(figure_path), "plots")

    def _log_file(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        if path.exists():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def close(self) -> None:
        return None

    def finish(self) -> None:
        """Mark the run's MLflow runs finished (after its last round)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`pst.run_dir` = '{self.layout.root.resolve()}'")
        for run in runs:
            self.client.set_terminated(run.info.run_id)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"pmi": {"beta": 1}}`` -> ``{"pmi.beta": 1}``; lists of sections get their index."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}.{i}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out
