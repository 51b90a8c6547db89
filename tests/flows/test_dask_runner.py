"""A wave's independent steps in parallel processes: the pipeline flow with the Dask task runner
(a local cluster of 2 single-threaded worker processes) trains and evaluates two tiny peers at the
same time and writes the same tables as the sequential run."""

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pst_core.config import parse_config
from pst_core.runner import Runner
from tests.helpers import tiny_config, training_outputs, write_pool

ROOT = Path(__file__).resolve().parents[2]


def test_dask_processes_give_the_same_tables_as_the_sequential_run(
        tmp_path, tiny_model_dirs, prefect_harness, monkeypatch):
    pytest.importorskip("prefect_dask")
    from flows.pipeline import pipeline_flow

    # The worker processes import this checkout's pst_core, whatever the venv has installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    two_peers = lambda out: tiny_config(tmp_path / out, tiny_model_dirs, pool, rounds=1)  # noqa: E731
    sequential = two_peers("sequential")
    sequential["peers"] = sequential["peers"][:2]
    parallel = two_peers("dask")
    parallel["peers"] = parallel["peers"][:2]
    plain = Runner(parse_config(sequential)).run()
    cfg = parse_config(parallel)
    run_dir = pipeline_flow(config=cfg, track=False, task_runner="dask", dask_workers=2)
    flowed = Runner(cfg).layout
    assert run_dir == str(flowed.root)
    peers = ("llama", "qwen")
    assert training_outputs(flowed, rounds=1, peers=peers) == training_outputs(plain, rounds=1,
                                                                                peers=peers)
    for r in (0, 1):
        assert pq.read_table(flowed.eval(r)).equals(pq.read_table(plain.eval(r)))
    # Both learners' training ran at the same time, in the Dask workers.
    spans = _task_spans(["round 1: train llama", "round 1: train qwen"])
    (start_a, end_a), (start_b, end_b) = spans.values()
    assert start_a < end_b and start_b < end_a, spans


def _task_spans(names: list[str]) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(any_=names)))
    latest = {}
    for run in sorted(runs, key=lambda run: run.start_time):
        latest[run.name] = (run.start_time, run.end_time)
    assert sorted(latest) == sorted(names), latest
    return latest
