"""MLflow tracking of a run directory written by hand with the real schemas: the experiment's
kind, the rounds' dataset inputs, system metrics and close(); and the Trackers composite."""

import logging
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pst_core.config import parse_config
from pst_core.evaluate import eval_metrics
from pst_core.schemas import EVAL_SCHEMA, METRICS_SCHEMA, RESPONSES_SCHEMA, TARGETS_SCHEMA
from pst_core.store import RunLayout, write_table
from pst_core.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    MlflowTracker,
    NullTracker,
    Trackers,
    get_or_create_experiment,
    mlflow_client,
)

PEERS = ("llama", "qwen")


def write_run(tmp_path, experiment: str = "tiny-track", rounds: int = 1) -> tuple[dict, RunLayout]:
    """A finished run's files for rounds 0..rounds: config.yaml, and per round eval, metrics
    and (training rounds) responses and targets, two peers answering two questions."""
    config = parse_config({
        "experiment": experiment, "rounds": rounds, "output_dir": str(tmp_path / "runs"),
        "data": {"pool": {"name": "pool", "benchmark": "synthetic"},
                 "eval": [{"name": "synthetic-eval", "benchmark": "synthetic"}]},
        "peers": [{"name": p, "source": f"models/{p}"} for p in PEERS],
    }).model_dump(mode="json")
    layout = RunLayout.for_run(config["output_dir"], config["experiment"], "run-test")
    layout.root.mkdir(parents=True)
    (layout.root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for r in range(rounds + 1):
        evals = [
            {"round": r, "model": peer, "benchmark": "synthetic-eval", "question_id": q,
             "kind": kind, "sample": s, "response": "The answer is 4.", "answer": "4",
             "correct": (q == "q1") != (s == 1), "n_tokens": 6, "finish_reason": "stop",
             "verify_score": None if kind == "greedy" else float(s)}
            for peer in PEERS for q in ("q1", "q2")
            for kind, s in (("greedy", 0), ("sample", 0), ("sample", 1))
        ]
        eval_table = pa.Table.from_pylist(evals, schema=EVAL_SCHEMA)
        write_table(eval_table, layout.eval(r), EVAL_SCHEMA)
        metrics = eval_metrics(eval_table)
        if r > 0:
            responses = [
                {"question_id": q, "peer": peer, "model": f"models/{peer}", "position": i,
                 "sample": 0, "prompt": "Q", "response": "The answer is 4.", "answer": "4",
                 "answer_rule": "the_answer_is", "n_tokens": 6, "finish_reason": "stop"}
                for i, peer in enumerate(PEERS) for q in ("q1", "q2")]
            targets = [
                {"question_id": q, "peer": peer, "response": "The answer is 4.", "answer": "4",
                 "weight": 1.0, "gold_match": q == "q1"}
                for peer in PEERS for q in ("q1", "q2")]
            write_table(pa.Table.from_pylist(responses, schema=RESPONSES_SCHEMA),
                        layout.responses(r), RESPONSES_SCHEMA)
            write_table(pa.Table.from_pylist(targets, schema=TARGETS_SCHEMA),
                        layout.targets(r), TARGETS_SCHEMA)
            checkpoint = layout.checkpoint(r, "qwen")  # qwen learns, llama does not
            checkpoint.mkdir(parents=True)
            (checkpoint / "adapter_config.json").write_text('{"r": 16}')
            metrics += [{"round": r, "peer": peer, "benchmark": None, "name": name,
                         "value": value} for peer in PEERS
                        for name, value in (("pseudo_label_acc", 0.5), ("wall_s/train", 3.0),
                                            ("rss_gb/train", 1.5))]
        write_table(pa.Table.from_pylist(metrics, schema=METRICS_SCHEMA), layout.metrics(r),
                    METRICS_SCHEMA)
    return config, layout


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One sqlite database for the module (creating one costs its migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_rounds_logged_with_dataset_inputs_system_metrics_and_ml_kind(tmp_path, tracking_uri):
    config, layout = write_run(tmp_path)
    client = mlflow_client(tracking_uri)
    # An existing experiment without the kind tag.
    client.create_experiment("tiny-track", artifact_location=(tmp_path / "mlartifacts").as_uri())

    tracker = MlflowTracker(config, layout, tracking_uri, system_metrics_interval_s=0.2)
    tracker.log_round(layout, 0)
    time.sleep(1.0)  # a few system-metric samples
    tracker.close()  # round 1 not logged yet: the runs stay open
    experiment = client.get_experiment_by_name("tiny-track")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    parent = client.get_run(tracker.parent_id)
    assert parent.info.status == "RUNNING"
    assert "system/cpu_utilization_percentage" in parent.data.metrics

    resumed = MlflowTracker(config, layout, tracking_uri, system_metrics_interval_s=None)
    assert resumed.parent_id == tracker.parent_id
    resumed.log_round(layout, 1)  # the last round: the runs are marked finished
    resumed.close()
    rounds = {r.data.tags["pst.round"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`pst.kind` = 'round'")}
    inputs = {r: {(d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"])
                  for d in run.inputs.dataset_inputs} for r, run in rounds.items()}
    assert inputs == {
        "0": {("round_0/eval", "evaluation")},
        "1": {("round_1/responses", "training"), ("round_1/targets", "training"),
              ("round_1/eval", "evaluation")},
    }
    [targets] = [d.dataset for d in rounds["1"].inputs.dataset_inputs
                 if d.dataset.name == "round_1/targets"]
    assert layout.targets(1).resolve().as_uri() in targets.source
    assert '"num_rows": 4' in targets.profile
    assert client.get_run(tracker.parent_id).info.status == "FINISHED"
    [qwen] = client.search_runs([experiment.experiment_id],
                                "tags.`pst.kind` = 'peer' and tags.`pst.peer` = 'qwen'")
    assert qwen.data.metrics["wall_s/train"] == 3.0 and qwen.data.metrics["rss_gb/train"] == 1.5

    # The learning curve on the parent (integer steps = rounds) and on each round's run.
    for peer in PEERS:
        history = client.get_metric_history(tracker.parent_id, f"em/{peer}/synthetic-eval")
        assert sorted(m.step for m in history) == [0, 1]
    assert rounds["1"].data.metrics["em/qwen/synthetic-eval"] == 0.5
    assert rounds["1"].data.metrics["gv_gap_abs/qwen/synthetic-eval"] == 0.0
    assert "wall_s/train" not in client.get_run(tracker.parent_id).data.metrics

    # Round 1's adapter is a LoggedModel; the evaluation metrics of round 1 link to it.
    [model] = client.search_logged_models([experiment.experiment_id])
    assert (model.name, model.model_type, str(model.status)) == (
        "qwen-round-1", "peft-lora-adapter", "READY")
    assert model.source_run_id == qwen.info.run_id and model.params["base_model"] == "models/qwen"
    linked = {(m.key, m.step, m.dataset_name) for m in model.metrics}
    assert ("em/synthetic-eval", 1, "round_1/eval") in linked
    assert resumed._log_model(qwen.info.run_id, layout.checkpoint(1, "qwen"), "qwen", 1) == \
        model.model_id  # found again, not logged twice


def test_experiment_kind_set_when_created_or_inferred_and_kept_when_chosen(tmp_path, tracking_uri):
    client = mlflow_client(tracking_uri)
    created = get_or_create_experiment(client, "kind-new", tmp_path)
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client.get_experiment(created).artifact_location.startswith("file://")
    inferred = client.create_experiment(
        "kind-inferred", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("kind-chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert get_or_create_experiment(client, "kind-inferred", tmp_path) == inferred
    assert get_or_create_experiment(client, "kind-chosen", tmp_path) == chosen
    assert client.get_experiment(inferred).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_close_never_raises(tmp_path, tracking_uri, monkeypatch, caplog):
    config, layout = write_run(tmp_path, experiment="tiny-close")
    tracker = MlflowTracker(config, layout, tracking_uri, system_metrics_interval_s=None)

    def down(*args, **kwargs):
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(tracker.client, "get_run", down)
    with caplog.at_level(logging.WARNING, logger="pst_core.tracking"):
        tracker.close()
    assert "tracking server down" in caplog.text


class _Recorder:
    def __init__(self):
        self.calls = []

    def log_round(self, layout, round_index):
        self.calls.append(("log_round", round_index))

    def close(self):
        self.calls.append(("close",))


class _Broken:
    def log_round(self, layout, round_index):
        raise RuntimeError("server down")

    def close(self):
        raise RuntimeError("server down")


def test_trackers_a_failing_member_stops_neither_the_others_nor_the_run(tmp_path, caplog):
    recorder = _Recorder()
    trackers = Trackers(_Broken(), NullTracker(), recorder)
    with caplog.at_level(logging.WARNING, logger="pst_core.tracking"):
        trackers.log_round(RunLayout(tmp_path), 1)
        trackers.close()
    assert recorder.calls == [("log_round", 1), ("close",)]
    assert caplog.text.count("_Broken") == 2 and "server down" in caplog.text


def test_a_round_is_logged_again_only_when_its_metrics_changed(tmp_path, tracking_uri):
    config, layout = write_run(tmp_path, experiment="tiny-relog", rounds=0)
    tracker = MlflowTracker(config, layout, tracking_uri, system_metrics_interval_s=None)
    tracker.log_round(layout, 0)
    tracker.log_round(layout, 0)  # unchanged: not logged twice
    peer = tracker._find_or_create({"pst.run_dir": str(layout.root.resolve()),
                                    "pst.kind": "peer", "pst.peer": "llama"}, "peer_llama")
    assert len(tracker.client.get_metric_history(peer, "em/synthetic-eval")) == 1
    # More questions evaluated on the resumed run: new metrics, logged again at the same step.
    rows = [m | {"value": 0.25} if m["name"] == "em" else m
            for m in pq.read_table(layout.metrics(0)).to_pylist()]
    write_table(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), layout.metrics(0),
                METRICS_SCHEMA)
    config["eval"]["limit"] = 9
    tracker = MlflowTracker(config, layout, tracking_uri, system_metrics_interval_s=None)
    tracker.log_round(layout, 0)
    history = tracker.client.get_metric_history(peer, "em/synthetic-eval")
    assert sorted(m.value for m in history)[0] == 0.25 and {m.step for m in history} == {0}
    parent = tracker.client.get_run(tracker.parent_id).data
    assert parent.tags["eval.limit"] == "9" and "eval.limit" not in parent.params
    assert parent.params["train.lora_r"] == "16"
