"""The Prefect pipeline flow on tiny peers: same tables as the plain loop, MLflow structure."""

import os

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from pst_core.config import parse_config
from pst_core.runner import Runner
from tests.helpers import tiny_config, training_outputs, write_pool


@pytest.fixture(scope="module")
def flow_and_plain_runs(tmp_path_factory, tiny_model_dirs, prefect_harness):
    from flows.pipeline import pipeline_flow

    tmp = tmp_path_factory.mktemp("flow")
    pool = write_pool(tmp / "pool.jsonl", labeled=True)
    plain_cfg = parse_config(tiny_config(tmp / "plain", tiny_model_dirs, pool, rounds=1))
    flow_cfg = parse_config(tiny_config(tmp / "flow", tiny_model_dirs, pool, rounds=1))
    plain = Runner(plain_cfg).run()
    run_dir = pipeline_flow(config=flow_cfg, track=True)
    return plain, Runner(flow_cfg).layout, run_dir, flow_cfg


def test_flow_writes_the_same_tables_as_the_plain_loop(flow_and_plain_runs):
    plain, flowed, run_dir, _ = flow_and_plain_runs
    assert run_dir == str(flowed.root)
    assert training_outputs(flowed, rounds=1) == training_outputs(plain, rounds=1)
    for r in (0, 1):
        assert pq.read_table(flowed.eval(r)).equals(pq.read_table(plain.eval(r)))


def test_each_step_is_a_task_named_after_it(flow_and_plain_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    cfg = flow_and_plain_runs[3]
    with get_client(sync_client=True) as client:
        rounds = [run for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=["round 1"])))
            if run.parameters["config"]["output_dir"] == cfg.output_dir]
        names = {t.name for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [run.id for run in rounds]}))}
    assert {"round 1: sample questions", "round 1: generate turn 1 llama",
            "round 1: generate turn 3 gemma", "round 1: score pmi qwen", "round 1: train llama",
            "round 1: evaluate qwen synthetic-eval", "round 1: collect targets"} <= names


def test_mlflow_parent_with_round_and_peer_children(flow_and_plain_runs):
    _, layout, _, cfg = flow_and_plain_runs
    client = MlflowClient(f"sqlite:///{layout.root.parents[1].resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    by_kind = {}
    for run in runs:
        by_kind.setdefault(run.data.tags["pst.kind"], []).append(run)
    assert len(by_kind["pipeline"]) == 1
    parent = by_kind["pipeline"][0]
    assert parent.data.params["method.pmi.beta"] == "1.0" and parent.data.params["peers.0.name"] == "llama"
    assert sorted(r.data.tags["pst.round"] for r in by_kind["round"]) == ["0", "1"]
    assert sorted(r.data.tags["pst.peer"] for r in by_kind["peer"]) == ["gemma", "llama", "qwen"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for r in by_kind["round"] + by_kind["peer"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    llama = next(r for r in by_kind["peer"] if r.data.tags["pst.peer"] == "llama")
    history = client.get_metric_history(llama.info.run_id, "em/synthetic-eval")
    assert sorted(m.step for m in history) == [0, 1]
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "agreement")] == [1]
    plots = [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert "plots/rounds.png" in plots and "plots/round_1_weight.png" in plots
    [adapter] = client.search_logged_models(
        [experiment.experiment_id], filter_string="tags.`pst.peer` = 'llama'")
    assert adapter.name == "llama-round-1" and adapter.source_run_id == llama.info.run_id
    files = os.listdir(adapter.artifact_location.removeprefix("file://"))
    assert "adapter_model.safetensors" in files
    assert sorted(m.step for m in client.get_metric_history(
        parent.info.run_id, "em/llama/synthetic-eval")) == [0, 1]
    round_1 = next(r for r in by_kind["round"] if r.data.tags["pst.round"] == "1")
    files = {a.path for a in client.list_artifacts(round_1.info.run_id)}
    assert {"responses.parquet", "aggregates.parquet", "pmi.parquet", "eval.parquet"} <= files


def test_rerun_skips_finished_work_and_does_not_duplicate_mlflow_runs(flow_and_plain_runs, monkeypatch):
    from flows.pipeline import pipeline_flow
    from pst_core.recipes import peers

    _, layout, _, cfg = flow_and_plain_runs
    monkeypatch.setattr(peers, "answer_turn", lambda *a, **k: pytest.fail("recomputed"))
    pipeline_flow(config=cfg, track=True)
    client = MlflowClient(f"sqlite:///{layout.root.parents[1].resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 1 + 2 + 3


def test_a_failing_tracking_server_loses_no_parquet(tmp_path, tiny_model_dirs, prefect_harness,
                                                    monkeypatch):
    from flows.pipeline import pipeline_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    cfg = parse_config(tiny_config(tmp_path, tiny_model_dirs, pool, rounds=0))
    run_dir = pipeline_flow(config=cfg, track=True)
    layout = Runner(cfg).layout
    assert run_dir == str(layout.root)
    assert pq.read_table(layout.eval(0)).num_rows > 0 and layout.metrics(0).exists()


def test_compare_flow_reports_a_run_without_base(flow_and_plain_runs, tmp_path):
    from flows.pipeline import compare_flow

    plain, _, _, _ = flow_and_plain_runs
    files = compare_flow([str(plain.root)], str(tmp_path / "REPORT.md"), track=False)
    text = open(files["markdown"]).read()
    assert "| pst | qwen | synthetic-eval | 1 | 3 |" in text
    assert "(no base run to compare with)" in text and files["csv"].endswith("REPORT.csv")


def test_a_user_error_is_not_retried_but_another_failure_is(prefect_harness):
    """A bad input fails the same way every time: retrying it only repeats its traceback."""
    from prefect import flow, task

    from flows.tasks import _retry_unless_user_error
    from pst_core.errors import ConfigError

    attempts = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=_retry_unless_user_error)
    def failing(kind: str) -> None:
        attempts.append(kind)
        raise ConfigError("bad input") if kind == "user" else RuntimeError("transient")

    @flow
    def one_step(kind: str) -> None:
        failing(kind)

    with pytest.raises(ConfigError):
        one_step("user")
    with pytest.raises(RuntimeError):
        one_step("bug")
    assert attempts.count("user") == 1 and attempts.count("bug") == 3
