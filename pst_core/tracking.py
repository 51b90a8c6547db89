"""MLflow tracking of a run, read back from its Parquet files after each round.

One MLflow run per pipeline run (tagged with its run directory, so a resumed run continues the
same MLflow run), with nested child runs: one per round (its Parquet files as artifacts, and its
responses, targets and eval tables as dataset inputs) and one per peer (its metrics with the
round as step, and each round's checkpoint as an MLflow LoggedModel its evaluation metrics link
to). The parent holds the flattened config as params, round-wide metrics and every peer's
headline metrics (``HEADLINE``) by round, plots, and system metrics (CPU, memory, disk, GPU)
sampled while the tracker lives, where psutil is installed. The experiment is marked as model
training; MLflow 3.17's UI still opens it in the GenAI view unless the browser last chose
"Model training", so the links ``ui_links`` makes name that view.

Tracking reads only what the stages already wrote, after they wrote it: a tracking server that
fails loses no Parquet data, and ``pst track RUN_DIR`` logs the missing rounds later. This is the
only pst_core module that imports mlflow (lazily, inside functions); other modules that log to
MLflow (``pst_core.report``'s comparison run) get their client and experiment from
``mlflow_client`` and ``get_or_create_experiment``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from pst_core.errors import ConfigError
from pst_core.schemas import EVAL_SCHEMA, METRICS_SCHEMA, RESPONSES_SCHEMA, TARGETS_SCHEMA
from pst_core.store import RunLayout, read_table

log = logging.getLogger(__name__)

# The settings that keep Prefect and MLflow from calling home (MLflow ignores "1").
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


def check_tracking_uri(uri: str) -> None:
    """An MLflow server at an http(s) tracking URI answers its health check within seconds (a
    wrong or stopped server would otherwise cost minutes of client retries, then a traceback).
    Local stores (sqlite, file) need no check.

    Raises:
        ConfigError: the URI, what the connection said, and the ways out.
    """
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5)
    except OSError as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(f"MLflow tracking URI {uri}: no server answers ({reason}); start one "
                          "(pst ui), correct MLFLOW_TRACKING_URI, or run with --no-track") from None


def mlflow_client(tracking_uri: str):
    """An ``MlflowClient`` for ``tracking_uri``, with the offline settings applied first."""
    apply_offline_env()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


# The experiment tag the MLflow UI (3.x) reads to pick an experiment's views. Its value
# "custom_model_development" is the UI's "Machine learning" type (runs, model and system metric
# charts); without it the UI infers a type and may file our runs under GenAI / Evaluation runs.
# Values the UI inferred by itself end in "_inferred" (or are "no_inferred_type").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The experiment tag naming the metric the UI's default charts lead with (its parallel
# coordinates plot compares runs on it).
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
# The run tag the UI renders as the run's description (markdown).
DESCRIPTION_TAG = "mlflow.note.content"


def get_or_create_experiment(client, name: str, output_dir: str | Path) -> str:
    """The id of experiment ``name``, marked as model training (``EXPERIMENT_KIND``).

    Created if missing, with its artifacts stored under ``<output_dir>/mlartifacts`` (a
    ``file://`` URI: MLflow 3 refuses the old file store). An existing experiment gets the kind tag if it has
    none or only one the UI inferred; a kind someone chose is kept.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        artifacts = (Path(output_dir).resolve() / "mlartifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifacts,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # another run of the experiment created it meanwhile
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    kind = experiment.tags.get(EXPERIMENT_KIND_TAG) or ""
    if kind in ("", "no_inferred_type") or kind.endswith("_inferred"):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


@contextlib.contextmanager
def trainer_reporting(cfg, layout: RunLayout, round_index: int, peer: str):
    """While a peer trains with ``train.report_to: mlflow``: the environment that sends the
    Hugging Face Trainer's MLflow run (its loss per optimizer step) to this run's tracking store
    and experiment, tagged with the run directory, round and peer like the pipeline's own runs
    (``pst.kind`` ``trainer``). A tracking URI the user set is kept. Process-wide, as the
    Trainer's integration reads it: two peers training in threads of one process would share it.
    """
    if "mlflow" not in cfg.train.report_to:
        yield
        return
    tags = {"pst.run_dir": str(layout.root.resolve()), "pst.kind": "trainer",
            "pst.round": str(round_index), "pst.peer": peer}
    env = {"MLFLOW_TRACKING_URI": default_tracking_uri(cfg.output_dir),
           "MLFLOW_EXPERIMENT_NAME": cfg.experiment, "MLFLOW_TAGS": json.dumps(tags)}
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Tracker(Protocol):
    """Where a run's results go after each round; ``close`` when the run (or process) ends."""

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


class Trackers:
    """Several trackers as one (MLflow and Prefect artifacts, say): each call goes to each.

    A member that fails logs a warning and stops neither the others nor the run: the round's
    Parquet files are the record, and ``pst track RUN_DIR`` can log them to MLflow later.
    """

    def __init__(self, *members: Tracker):
        self.members = members

    def log_round(self, layout: RunLayout, round_index: int) -> None:
        for member in self.members:
            try:
                member.log_round(layout, round_index)
            except Exception as e:  # noqa: BLE001 - tracking must never stop the run
                log.warning("%s: logging round %d failed (%s); its files are complete in %s",
                            type(member).__name__, round_index, e, layout.root)

    def close(self) -> None:
        for member in self.members:
            try:
                member.close()
            except Exception as e:  # noqa: BLE001 - closing must never stop the others
                log.warning("%s: close failed (%s)", type(member).__name__, e)


# The metrics a learning curve is read from. The parent run and each round's run carry them as
# ``<metric>/<peer>/<benchmark>`` (step = round), so the experiment's chart view shows every
# peer's curve and a comparison of two round runs sets their EM side by side.
HEADLINE = ("em", "gv_gap_abs", "gv_gap_rel")

# A round's tables logged as dataset inputs of its round run: (file stem, schema, MLflow context).
ROUND_DATASETS = (
    ("responses", RESPONSES_SCHEMA, "training"),
    ("targets", TARGETS_SCHEMA, "training"),
    ("eval", EVAL_SCHEMA, "evaluation"),
)


class MlflowTracker:
    """Logs a run to MLflow: a parent run, child runs per round and per peer.

    Args:
        config: the experiment config as a JSON-able dict (params are its flattened fields).
        layout: the run's directory layout.
        tracking_uri: MLflow tracking URI; default ``default_tracking_uri(output_dir)``.
        system_metrics_interval_s: seconds between samples of system metrics (CPU, memory,
            disk, network, GPU) logged to the parent run until ``close``; None: none. Needs
            psutil (skipped without it); ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it.
    """

    def __init__(
        self, config: dict[str, Any], layout: RunLayout, tracking_uri: str | None = None,
        system_metrics_interval_s: float | None = 10.0,
    ):
        self.uri = tracking_uri or default_tracking_uri(config["output_dir"])
        self.client = mlflow_client(self.uri)
        self.layout = layout
        self.rounds = config["rounds"]
        self.sources = {peer["name"]: peer["source"] for peer in config["peers"]}
        self.experiment_id = get_or_create_experiment(
            self.client, config["experiment"], config["output_dir"])
        self.parent_id = self._find_or_create(
            {"pst.run_dir": str(layout.root.resolve()), "pst.kind": "pipeline"},
            run_name=layout.root.name,
        )
        parent = self.client.get_run(self.parent_id)
        # Evaluation settings may grow on a resumed run (eval.limit, a new benchmark): they are
        # tags, which can change; MLflow params cannot, so they hold the rest of the config.
        fields = flatten(config)
        evaluation = {k: v for k, v in fields.items() if k.startswith(("eval.", "data.eval"))}
        for key, value in evaluation.items():
            self.client.set_tag(self.parent_id, key, str(value)[:5000])
        if not parent.data.params:
            for key, value in fields.items():
                if key not in evaluation:
                    self.client.log_param(self.parent_id, key, str(value)[:6000])
        self._log_file(self.parent_id, layout.root / "config.yaml", None)
        learners = config.get("learners") or [peer["name"] for peer in config["peers"]]
        if config["data"]["eval"] and PRIMARY_METRIC_TAG not in self.client.get_experiment(
                self.experiment_id).tags:  # a primary metric someone chose is kept
            self.client.set_experiment_tag(
                self.experiment_id, PRIMARY_METRIC_TAG,
                f"em/{learners[0]}/{config['data']['eval'][0]['name']}")
        self._stop_system_metrics = _no_monitor
        if system_metrics_interval_s is not None and parent.info.status == "RUNNING":
            self._start_system_metrics(system_metrics_interval_s)

    def _start_system_metrics(self, interval_s: float) -> None:
        """Sample system metrics into the parent run until ``close`` (or until this tracker is
        garbage-collected: a tracker made per round stops its sampler when it goes away)."""
        if importlib.util.find_spec("psutil") is None:
            log.debug("psutil is not installed: no MLflow system metrics")
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(self.parent_id, sampling_interval=interval_s,
                                           resume_logging=True, tracking_uri=self.uri)
            monitor.start()
        except Exception as e:  # noqa: BLE001 - system metrics are a nicety, never a failure
            log.warning("MLflow system metrics not started (%s)", e)
            return
        self._stop_system_metrics = weakref.finalize(self, monitor.finish)

    def _find_or_create(self, tags: dict[str, str], run_name: str, parent: str | None = None) -> str:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        if found:
            return found[0].info.run_id
        if parent is not None:
            tags = {**tags, "mlflow.parentRunId": parent}
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_round(self, layout: RunLayout, round_index: int) -> None:
        """Log round r's metrics, Parquet files, checkpoints and plots; again only when its
        metrics changed since (a resumed run that evaluated more questions)."""
        r = round_index
        done_tag = f"pst.round_{r}.logged"
        digest = hashlib.sha256(layout.metrics(r).read_bytes()).hexdigest()[:16]
        if self.client.get_run(self.parent_id).data.tags.get(done_tag) == digest:
            return
        run_dir = str(layout.root.resolve())
        metrics = read_table(layout.metrics(r), METRICS_SCHEMA).to_pylist()
        round_run = self._find_or_create(
            {"pst.run_dir": run_dir, "pst.kind": "round", "pst.round": str(r)},
            run_name=f"round_{r}", parent=self.parent_id)
        for path in sorted(layout.round_dir(r).glob("*.parquet")):
            self._log_file(round_run, path, None)
        eval_name, eval_digest = self._log_datasets(round_run, layout, r).get("eval", (None, None))
        for m in metrics:
            if m["value"] is None or (m["peer"] is not None and m["name"] not in HEADLINE):
                continue
            if m["peer"] is None:
                key = m["name"]
            elif math.isnan(m["value"]):  # an undefined relative gap: no point on the curve
                continue
            else:
                key = f"{m['name']}/{m['peer']}/{m['benchmark']}"
            self.client.log_metric(self.parent_id, key, m["value"], step=r)
            self.client.log_metric(round_run, key, m["value"], step=r)
        for peer in sorted({m["peer"] for m in metrics if m["peer"] is not None}):
            peer_run = self._find_or_create(
                {"pst.run_dir": run_dir, "pst.kind": "peer", "pst.peer": peer},
                run_name=f"peer_{peer}", parent=self.parent_id)
            checkpoint = layout.checkpoint(r, peer)
            model_id = (self._log_model(peer_run, checkpoint, peer, r)
                        if checkpoint.is_dir() else None)
            for m in metrics:
                if m["peer"] != peer or m["value"] is None:
                    continue
                if m["benchmark"] is None:
                    self.client.log_metric(peer_run, m["name"], m["value"], step=r)
                else:  # an evaluation of round r's model on the round's eval table
                    self.client.log_metric(
                        peer_run, f"{m['name']}/{m['benchmark']}", m["value"], step=r,
                        model_id=model_id, dataset_name=eval_name, dataset_digest=eval_digest)
        self.client.set_terminated(round_run)
        self._describe()
        self._log_plots(layout, r)
        self.client.set_tag(self.parent_id, done_tag, digest)
        if r == self.rounds:
            self._stop_system_metrics()
            self.finish()

    def _describe(self) -> None:
        """The parent run's description: where its learning curves and rounds are in the UI."""
        links = ui_links(self.client, self.experiment_id, self.layout.root)
        self.client.set_tag(self.parent_id, DESCRIPTION_TAG, (
            f"PST run `{self.layout.root.name}`: every peer's headline metrics per round are on "
            "this run's *Model metrics* tab (step = round).\n\n"
            f"- [Rounds side by side]({links['rounds']}) (EM and GV gap of each round's run)\n"
            f"- [All runs of the experiment, as charts]({links['charts']})"))

    def _log_model(self, peer_run: str, checkpoint: Path, peer: str, r: int) -> str:
        """Round r's checkpoint of ``peer`` as an MLflow LoggedModel (the experiment's Models
        tab): the checkpoint's files as its artifacts, an output of the peer's run at step r.
        Returns its id; a resumed run finds it by its tags (and finishes one a crash left
        pending) instead of logging a second."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        tags = {"pst.run_dir": str(self.layout.root.resolve()), "pst.peer": peer,
                "pst.round": str(r)}
        query = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_logged_models([self.experiment_id], filter_string=query,
                                                 max_results=1)
        if found and found[0].status == LoggedModelStatus.READY:
            return found[0].model_id
        lora = (checkpoint / "adapter_config.json").exists()
        model_id = found[0].model_id if found else self.client.create_logged_model(
            self.experiment_id, name=f"{peer}-round-{r}", source_run_id=peer_run, tags=tags,
            params={"base_model": self.sources.get(peer, ""), "round": str(r)},
            model_type="peft-lora-adapter" if lora else "transformers-model").model_id
        self.client.log_model_artifacts(model_id, str(checkpoint))
        self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        self.client.log_outputs(peer_run, [LoggedModelOutput(model_id, step=r)])
        return model_id

    def _log_datasets(self, run_id: str, layout: RunLayout, r: int) -> dict[str, tuple[str, str]]:
        """The round's tables as MLflow dataset inputs (name ``round_<r>/<table>``, source the
        Parquet file, digest, schema and row count), shown on the run's page and in its lineage.
        Returns ``{table: (dataset name, digest)}``, for metrics to name the data they measure."""
        import mlflow.data
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs, logged = [], {}
        for stem, schema, context in ROUND_DATASETS:
            path = layout.table(r, stem)
            if not path.exists():  # round 0 has no training side
                continue
            with warnings.catch_warnings(action="ignore", category=UserWarning):  # schema hints
                dataset = mlflow.data.from_pandas(
                    read_table(path, schema).to_pandas(), source=path.resolve().as_uri(),
                    name=f"round_{r}/{stem}")
                entity = Dataset(**dataset.to_dict())
            inputs.append(DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
            logged[stem] = (entity.name, entity.digest)
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)
        return logged

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
        """Stop sampling system metrics, and mark the runs finished if the last round is logged
        (rounds are logged in order). Never raises: a failure is logged as a warning."""
        try:
            self._stop_system_metrics()
            tags = self.client.get_run(self.parent_id).data.tags
            if f"pst.round_{self.rounds}.logged" in tags:
                self.finish()
        except Exception as e:  # noqa: BLE001 - closing must never fail the run
            log.warning("MLflow: closing the tracker of %s failed (%s)", self.layout.root, e)

    def finish(self) -> None:
        """Mark the run's MLflow runs finished (after its last round)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`pst.run_dir` = '{self.layout.root.resolve()}'")
        for run in runs:
            self.client.set_terminated(run.info.run_id)


def ui_links(client, experiment_id: str, run_dir: Path, ui: str = "") -> dict[str, str]:
    """Pages of the MLflow UI at ``ui`` (e.g. ``http://127.0.0.1:5000``; empty: links relative
    to the UI) for the run in ``run_dir``: ``run`` its charts, ``rounds`` its round runs side
    by side, ``charts`` the experiment's runs as charts, in the model-training view (without
    ``workflowType`` the UI opens the GenAI overview)."""
    root = f"{ui.rstrip('/')}/#" if ui else "#"
    base = f"{root}/experiments/{experiment_id}"
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`pst.run_dir` = '{Path(run_dir).resolve()}'"))
    parent = next((r.info.run_id for r in runs if r.data.tags.get("pst.kind") == "pipeline"), "")
    rounds = sorted((r for r in runs if r.data.tags.get("pst.kind") == "round"),
                    key=lambda r: int(r.data.tags["pst.round"]))
    ids = quote(json.dumps([r.info.run_id for r in rounds], separators=(",", ":")))
    return {
        "run": f"{base}/runs/{parent}/model-metrics?workflowType=machine_learning",
        "rounds": f"{root}/compare-runs?runs={ids}"
                  f"&experiments={quote(json.dumps([experiment_id]))}",
        "charts": f"{base}/runs?workflowType=machine_learning&compareRunsMode=CHART",
    }


def _no_monitor() -> None:
    return None


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
