"""The whole PST loop on tiny random-init peers: artifacts, resume, gold-blindness."""

from unittest import mock

import pyarrow.parquet as pq
import pytest

from pst_core.config import parse_config
from pst_core.runner import Runner
from tests.helpers import tiny_config, training_outputs, write_pool

ARTIFACTS = ["responses.parquet", "aggregates.parquet", "pmi.parquet", "train_log.parquet",
             "eval.parquet", "metrics.parquet"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dirs):
    tmp = tmp_path_factory.mktemp("pipeline")
    pool = write_pool(tmp / "pool.jsonl", labeled=True)
    cfg = parse_config(tiny_config(tmp, tiny_model_dirs, pool))
    return cfg, Runner(cfg).run()


def test_every_artifact_is_written(finished_run):
    cfg, layout = finished_run
    assert (layout.root / "config.yaml").exists()
    assert pq.read_table(layout.dataset("pool")).num_rows == 30
    assert pq.read_table(layout.eval(0)).num_rows == 3 * 3 * (1 + 2)  # peers x questions x (greedy + samples)
    for r in (1, 2):
        for name in ARTIFACTS:
            assert (layout.round_dir(r) / name).exists(), (r, name)
        responses = pq.read_table(layout.responses(r)).to_pylist()
        assert len(responses) == 6 * 3
        assert {x["position"] for x in responses if x["peer"] == "gemma"} == {2}
        for peer in ("llama", "qwen", "gemma"):
            assert (layout.checkpoint(r, peer) / "adapter_model.safetensors").exists()
    metrics = pq.read_table(layout.metrics(1)).to_pylist()
    names = {m["name"] for m in metrics}
    assert {"em", "gv_gap_abs", "gv_gap_rel", "agreement", "pseudo_label_acc",
            "wall_s/generate/turn0", "wall_s/score", "wall_s/train",
            "wall_s/eval/synthetic-eval", "rss_gb/train", "rss_gb/eval/synthetic-eval"} <= names


def test_rounds_sample_fresh_questions(finished_run):
    _, layout = finished_run
    q1 = {x["question_id"] for x in pq.read_table(layout.responses(1)).to_pylist()}
    q2 = {x["question_id"] for x in pq.read_table(layout.responses(2)).to_pylist()}
    assert len(q1) == len(q2) == 6 and not q1 & q2


def test_peer_prompts_show_earlier_answers(finished_run):
    _, layout = finished_run
    rows = pq.read_table(layout.responses(1)).to_pylist()
    first = next(x for x in rows if x["position"] == 0)
    later = next(x for x in rows if x["position"] == 1 and x["question_id"] == first["question_id"])
    assert "Student 1:" not in first["prompt"]
    assert "Student 1: " + first["response"].strip() in later["prompt"]


def test_training_never_reads_gold(tmp_path, tiny_model_dirs, finished_run):
    """Same run on a pool whose answer column was removed: identical training-side outputs."""
    cfg, layout = finished_run
    pool = write_pool(tmp_path / "pool.jsonl", labeled=False)
    blind = parse_config(tiny_config(tmp_path, tiny_model_dirs, pool))
    blind_layout = Runner(blind).run()
    assert pq.read_table(blind_layout.dataset("pool")).column("answer").null_count == 30
    assert training_outputs(blind_layout) == training_outputs(layout)
    audit = pq.read_table(blind_layout.aggregates(1)).column("gold_match")
    assert audit.null_count == len(audit)


def test_resume_after_interruption_gives_the_same_tables(tmp_path, tiny_model_dirs, finished_run):
    _, layout = finished_run
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    cfg = parse_config(tiny_config(tmp_path, tiny_model_dirs, pool, run=layout.root.name))
    real_train = __import__("pst_core.train", fromlist=["train_peer"]).train_peer
    calls = []

    def crash_on_second_peer_of_round_2(*args, **kwargs):
        calls.append(kwargs["peer"])
        if len(calls) == 5:  # round 1: 3 peers; round 2: crash on the 2nd
            raise KeyboardInterrupt("killed")
        return real_train(*args, **kwargs)

    with mock.patch("pst_core.train.train_peer", side_effect=crash_on_second_peer_of_round_2):
        with pytest.raises(KeyboardInterrupt):
            Runner(cfg).run()
    with mock.patch("pst_core.recipes.peers.answer_turn", side_effect=AssertionError("recomputed")):
        resumed = Runner(cfg).run()  # generation of rounds 1-2 is done: it must not run again
    assert training_outputs(resumed) == training_outputs(layout)
    for r in range(3):
        assert pq.read_table(resumed.eval(r)).to_pylist() == pq.read_table(layout.eval(r)).to_pylist()


def test_resumed_evaluation_keeps_finished_benchmarks_and_their_times(tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    spec = {"benchmark": "synthetic", "synthetic": {"n": 40}, "limit": 2}
    cfg = parse_config(tiny_config(
        tmp_path, tiny_model_dirs, pool, method="base", rounds=0, peers=tiny_config(
            tmp_path, tiny_model_dirs, pool)["peers"][:1],
        data={"pool": {"name": "pool", "path": str(pool), "columns": {"id": "id"}},
              "eval": [spec | {"name": "first"}, spec | {"name": "second"}]}))
    real_evaluate = __import__("pst_core.evaluate", fromlist=["evaluate_peer"]).evaluate_peer
    benchmarks = []

    def crash_on_second(*args, **kwargs):
        benchmarks.append(kwargs["benchmark"])
        if kwargs["benchmark"] == "second" and benchmarks.count("second") == 1:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*args, **kwargs)

    with mock.patch("pst_core.evaluate.evaluate_peer", side_effect=crash_on_second):
        with pytest.raises(KeyboardInterrupt):
            Runner(cfg).run()
        layout = Runner(cfg).run()
    assert benchmarks == ["first", "second", "second"]  # the finished benchmark is not redone
    names = {m["name"] for m in pq.read_table(layout.metrics(0)).to_pylist()}
    assert {"wall_s/eval/first", "wall_s/eval/second"} <= names


def test_an_evaluation_killed_midway_keeps_its_finished_slices(tmp_path, tiny_model_dirs):
    """Evaluation writes its part after each slice of decode rows: killed in the second slice,
    the rerun answers only the questions of the slices not written, and every question is in
    the table once."""
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    raw = tiny_config(tmp_path, tiny_model_dirs, pool, rounds=0,
                      method={"name": "base", "temperatures": [0.0]})  # no swept answers
    raw["peers"] = raw["peers"][:1]
    raw["data"]["eval"][0] |= {"limit": 6}
    raw["eval"] |= {"n_samples": 2, "gap_limit": 4}  # 6 greedy + 4 x 2 sampled rows
    cfg = parse_config(raw)
    real_evaluate = __import__("pst_core.evaluate", fromlist=["evaluate_peer"]).evaluate_peer
    asked = []

    def killed_in_second_slice(questions, *args, gap_questions, **kwargs):
        asked.append((questions.column("id").to_pylist(), gap_questions.column("id").to_pylist()))
        if len(asked) == 2:
            raise KeyboardInterrupt("killed")
        return real_evaluate(questions, *args, gap_questions=gap_questions, **kwargs)

    slices = mock.patch("pst_core.steps.EVAL_CHUNK_ROWS", 5)  # 14 rows: 3 slices
    spy = mock.patch("pst_core.evaluate.evaluate_peer", side_effect=killed_in_second_slice)
    with slices, spy, pytest.raises(KeyboardInterrupt):
        Runner(cfg).run()
    assert len(asked) == 2 and len(asked[0][0]) == 2 and len(asked[0][1]) == 1
    with slices, spy:
        layout = Runner(cfg).run()
    first, rest = asked[0], asked[2:]
    assert not set(first[0]) & {q for greedy, _ in rest for q in greedy}  # not asked again
    assert not set(first[1]) & {q for _, sampled in rest for q in sampled}
    evals = pq.read_table(layout.eval(0)).to_pylist()
    greedy = [x["question_id"] for x in evals if x["kind"] == "greedy"]
    sampled = [x["question_id"] for x in evals if x["kind"] == "sample"]
    assert len(greedy) == len(set(greedy)) == 6 and len(sampled) == 4 * 2


def test_options_consistency_order_last_reference_full_finetuning(tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    raw = tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1)
    raw["method"] = {"name": "pst", "order": "consistency", "consistency_questions": 2,
                     "consistency_samples": 2, "aggregate": {"rule": "last"},
                     "pmi": {"beta": 0.0}}
    raw["train"] |= {"finetune": "full"}
    layout = Runner(parse_config(raw)).run()
    ranking = pq.read_table(layout.round_dir(1) / "consistency.parquet").to_pylist()
    order = [r["peer"] for r in sorted(ranking, key=lambda r: -r["consistency"])]
    responses = pq.read_table(layout.responses(1)).to_pylist()
    first = {r["peer"] for r in responses if r["position"] == 0}
    assert first == {order[0]}
    aggregates = pq.read_table(layout.aggregates(1)).to_pylist()
    last = {r["question_id"]: r for r in responses if r["position"] == 2}
    assert all(a["response"] == last[a["question_id"]]["response"] for a in aggregates)
    assert set(pq.read_table(layout.pmi(1)).column("weight").to_pylist()) <= {1.0}
    for peer in ("llama", "qwen", "gemma"):
        assert (layout.checkpoint(1, peer) / "model.safetensors").exists()


def test_more_evaluation_resumes_the_run_and_evaluates_only_what_is_missing(
        tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    raw = tiny_config(tmp_path, tiny_model_dirs, pool, rounds=1, learners=["qwen"])
    first = Runner(parse_config(raw)).run()
    real_evaluate = __import__("pst_core.evaluate", fromlist=["evaluate_peer"]).evaluate_peer
    asked = []

    def spy(questions, *args, gap_questions, **kwargs):
        asked.append((kwargs["round_index"], questions.num_rows, gap_questions.num_rows))
        return real_evaluate(questions, *args, gap_questions=gap_questions, **kwargs)

    raw["eval"] = raw["eval"] | {"limit": 5}
    with mock.patch("pst_core.evaluate.evaluate_peer", side_effect=spy), \
            mock.patch("pst_core.recipes.peers.answer_turn", side_effect=AssertionError("retrained")):
        again = Runner(parse_config(raw)).run()
    assert again.root == first.root  # the same experiment: no new run directory
    assert asked == [(0, 2, 2), (1, 2, 2)]  # the 2 new questions, greedy and sampled
    for r in (0, 1):
        evals = pq.read_table(again.eval(r)).to_pylist()
        assert len({x["question_id"] for x in evals if x["kind"] == "greedy"}) == 5
        assert len([x for x in evals if x["kind"] == "sample"]) == 5 * 2
    metrics = {m["name"]: m["value"] for m in pq.read_table(again.metrics(1)).to_pylist()
               if m["peer"] == "qwen" and m["benchmark"]}
    assert metrics["n_questions"] == 5
    raw["train"] = raw["train"] | {"lora_r": 2}
    assert Runner(parse_config(raw)).layout.root != first.root  # training changed: a new run


def test_the_gap_is_sampled_only_at_the_rounds_and_benchmarks_the_config_names(
        tmp_path, tiny_model_dirs):
    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    raw = tiny_config(tmp_path, tiny_model_dirs, pool, learners=["qwen"])
    raw["data"]["eval"].append({"name": "greedy-only", "benchmark": "synthetic",
                                "synthetic": {"n": 40}, "limit": 2})
    raw["eval"] |= {"gap_rounds": "last", "gap_benchmarks": ["synthetic-eval"]}
    layout = Runner(parse_config(raw)).run()
    for r in (0, 1, 2):
        evals = pq.read_table(layout.eval(r)).to_pylist()
        sampled = {x["benchmark"] for x in evals if x["kind"] == "sample"}
        assert sampled == ({"synthetic-eval"} if r == 2 else set())
        assert {x["benchmark"] for x in evals if x["kind"] == "greedy"} == {
            "synthetic-eval", "greedy-only"}  # EM every round
        gap = {m["benchmark"]: m["value"] for m in pq.read_table(layout.metrics(r)).to_pylist()
               if m["name"] == "gv_gap_abs"}
        assert (gap["synthetic-eval"] == gap["synthetic-eval"]) == (r == 2)  # NaN without samples
    raw["eval"] |= {"gap_benchmarks": ["nope"]}
    with pytest.raises(Exception, match="eval.gap_benchmarks nope are not data.eval names"):
        parse_config(raw)
