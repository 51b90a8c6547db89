"""The baselines on tiny peers: each method's defining property, and gold-blindness for all."""

import pyarrow.parquet as pq
import pytest

from pst_core import context
from pst_core.answers import group_answers
from pst_core.config import parse_config
from pst_core.runner import Runner
from tests.helpers import tiny_config, training_outputs, write_pool


def run(tmp_path, model_dirs, method, rounds=1, labeled=True, **changes):
    tmp_path.mkdir(parents=True, exist_ok=True)
    pool = write_pool(tmp_path / f"pool-{labeled}.jsonl", labeled=labeled)
    raw = tiny_config(tmp_path, model_dirs, pool, rounds=rounds, method=method, **changes)
    if method == "majority":
        raw["method"] = {"name": "majority", "n_samples": 4, "min_agreement": 0.25}
    if method == "distill":
        raw |= {"method": {"name": "distill", "teacher": "llama"}, "learners": ["qwen", "gemma"]}
    return Runner(parse_config(raw)).run()


def test_pst_uniform_weights_are_all_one_and_skip_scoring(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, "pst-uniform")
    targets = pq.read_table(layout.targets(1)).to_pylist()
    assert targets and {t["weight"] for t in targets} == {1.0}
    assert layout.aggregates(1).exists() and not layout.pmi(1).exists()


def test_sept_trains_on_its_own_outputs_with_online_refresh(tmp_path, tiny_model_dirs, monkeypatch):
    loaded = []
    real_load = context.load_backend

    def spy(peer, checkpoint=None):
        loaded.append((peer.name, checkpoint))
        return real_load(peer, checkpoint)

    monkeypatch.setattr(context, "load_backend", spy)
    layout = run(tmp_path, tiny_model_dirs, "sept", rounds=2)
    for r in (1, 2):
        responses = pq.read_table(layout.responses(r)).to_pylist()
        targets = pq.read_table(layout.targets(r)).to_pylist()
        for peer in ("llama", "qwen", "gemma"):
            own = [(x["question_id"], x["response"]) for x in responses if x["peer"] == peer]
            trained = [(t["question_id"], t["response"]) for t in targets if t["peer"] == peer]
            assert trained == own and len(own) == 6  # its own responses, one per question
    # Round 2 generates with the round-1 checkpoints (online refresh).
    assert ("llama", layout.checkpoint(1, "llama")) in loaded
    assert {x["position"] for x in pq.read_table(layout.responses(2)).to_pylist()} == {0}


def test_majority_trains_only_on_responses_carrying_the_majority(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, "majority")
    responses = pq.read_table(layout.responses(1)).to_pylist()
    targets = pq.read_table(layout.targets(1)).to_pylist()
    assert targets, "tiny peers produced no extractable answers at all"
    for t in targets:
        samples = sorted((x for x in responses if x["peer"] == t["peer"]
                          and x["question_id"] == t["question_id"]), key=lambda x: x["sample"])
        assert len(samples) == 4
        groups = group_answers([s["answer"] for s in samples])
        majority = max(groups, key=len)
        assert t["response"] == samples[majority[0]]["response"]
        assert len(majority) / 4 >= 0.25
    per_question = {(t["peer"], t["question_id"]) for t in targets}
    assert len(per_question) == len(targets)  # one response per question: equal budgets


def test_base_sweeps_temperatures_and_never_trains(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, "base", rounds=0)
    kinds = set(pq.read_table(layout.eval(0)).column("kind").to_pylist())
    assert kinds == {"greedy", "sample", "t=0.3", "t=0.6", "t=1"}
    names = {m["name"] for m in pq.read_table(layout.metrics(0)).to_pylist()}
    assert {"em@t=0", "em@t=0.3", "em@t=1", "em_best", "best_temperature"} <= names
    assert not list(layout.root.glob("round_*/checkpoints"))
    with pytest.raises(Exception, match="method base trains nothing: set rounds: 0"):
        run(tmp_path, tiny_model_dirs, "base", rounds=1)


def test_distill_trains_learners_on_the_teachers_solo_answers(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, {"name": "distill", "teacher": "llama"},
                 learners=["qwen", "gemma"], generation={"max_new_tokens": 24})
    responses = pq.read_table(layout.responses(1)).to_pylist()
    assert {(x["peer"], x["position"]) for x in responses} == {("llama", 0)}  # no chain
    assert len(responses) == 6 and not layout.aggregates(1).exists()
    usable = {x["question_id"]: x["response"] for x in responses
              if x["answer"] is not None and x["finish_reason"] != "length"}
    targets = pq.read_table(layout.targets(1)).to_pylist()
    for learner in ("qwen", "gemma"):
        mine = {t["question_id"]: t["response"] for t in targets if t["peer"] == learner}
        assert mine == usable  # the teacher's words (teacher_targets), each learner
    assert {t["weight"] for t in targets} <= {1.0}
    assert sorted(p.name for p in (layout.round_dir(1) / "checkpoints").iterdir()) == [
        "gemma", "qwen"]  # the teacher stays untuned


def test_pst_shuffled_permutes_pst_weights_among_the_rounds_examples(tmp_path, tiny_model_dirs):
    shuffled = run(tmp_path / "shuffled", tiny_model_dirs, "pst-shuffled", learners=["qwen"])
    pmi = {p["question_id"]: p["weight"] for p in pq.read_table(shuffled.pmi(1)).to_pylist()}
    targets = pq.read_table(shuffled.targets(1)).to_pylist()
    assert sorted(t["weight"] for t in targets) == sorted(pmi.values())  # same distribution
    assert len(set(pmi.values())) > 1, "tiny peers gave every example the same PMI weight"
    assert [t["weight"] for t in targets] != [pmi[t["question_id"]] for t in targets]
    plain = run(tmp_path / "plain", tiny_model_dirs, "pst", learners=["qwen"])
    strip = lambda rows: [(t["question_id"], t["response"]) for t in rows]
    assert strip(targets) == strip(pq.read_table(plain.targets(1)).to_pylist())


@pytest.mark.parametrize("method", ["sept", "majority", "pst-uniform", "pst-paper", "pst-robust",
                                    "pst-shuffled", "distill"])
def test_no_method_reads_gold_before_evaluation(tmp_path, tiny_model_dirs, method):
    labeled = run(tmp_path / "labeled", tiny_model_dirs, method, labeled=True)
    blind = run(tmp_path / "blind", tiny_model_dirs, method, labeled=False)
    assert pq.read_table(blind.dataset("pool")).column("answer").null_count == 30
    trained = ("qwen", "gemma") if method == "distill" else ("llama", "qwen", "gemma")
    assert (training_outputs(labeled, rounds=1, peers=trained)
            == training_outputs(blind, rounds=1, peers=trained))


def test_learners_alone_are_trained_and_evaluated(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, "pst", learners=["qwen"],
                 eval={"max_new_tokens": 8, "n_samples": 2, "gap_limit": 2, "initial": False})
    responses = pq.read_table(layout.responses(1)).to_pylist()
    assert {x["peer"] for x in responses} == {"llama", "qwen", "gemma"}  # all answer their turns
    assert {t["peer"] for t in pq.read_table(layout.targets(1)).to_pylist()} == {"qwen"}
    assert [p.name for p in (layout.round_dir(1) / "checkpoints").iterdir()] == ["qwen"]
    evals = pq.read_table(layout.eval(1)).to_pylist()
    assert {x["model"] for x in evals} == {"qwen"}
    assert len([x for x in evals if x["kind"] == "greedy"]) == 3
    assert len({x["question_id"] for x in evals if x["kind"] == "sample"}) == 2  # gap_limit
    assert not layout.round_dir(0).exists()  # eval.initial: false


def test_pst_paper_trains_each_peer_on_its_own_turn_against_the_last_response(
        tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, "pst-paper")
    responses = pq.read_table(layout.responses(1)).to_pylist()
    aggregates = pq.read_table(layout.aggregates(1)).to_pylist()
    last = {x["question_id"]: x for x in responses if x["position"] == 2}
    assert aggregates and all(a["response"] == last[a["question_id"]]["response"]
                              for a in aggregates)  # the reference: the last responder's
    targets = pq.read_table(layout.targets(1)).to_pylist()
    pmi = {(p["peer"], p["question_id"]): p["weight"] for p in pq.read_table(layout.pmi(1))
           .to_pylist()}
    own = {(x["peer"], x["question_id"]): x["response"] for x in responses}
    assert {t["peer"] for t in targets} == {"llama", "qwen", "gemma"}
    for t in targets:
        assert t["response"] == own[(t["peer"], t["question_id"])]  # its own trajectory
        assert t["weight"] == pmi[(t["peer"], t["question_id"])]  # sigmoid-of-PMI weights


def test_the_last_responder_can_be_left_untrained(tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, {"name": "pst-uniform", "train_last": False})
    targets = pq.read_table(layout.targets(1)).to_pylist()
    assert targets and {t["peer"] for t in targets} == {"llama", "qwen"}  # gemma answers last


def test_pst_robust_weighs_peers_by_reliability_and_skips_unsure_questions(
        tmp_path, tiny_model_dirs):
    layout = run(tmp_path, tiny_model_dirs, {"name": "pst-robust", "aggregate": {
        "rule": "reliable", "min_share": 0.9, "representative": "earliest"}})
    peers = pq.read_table(layout.round_dir(1) / "peers.parquet").to_pylist()
    assert [p["peer"] for p in peers] == ["llama", "qwen", "gemma"]
    assert all(0 <= p["estimated_accuracy"] <= 1 for p in peers)
    responses = pq.read_table(layout.responses(1)).to_pylist()
    for a in pq.read_table(layout.aggregates(1)).to_pylist():
        assert a["method"] == "reliable"
        carriers = [x for x in responses if x["question_id"] == a["question_id"]
                    and x["answer"] is not None and x["answer"] == a["answer"]]
        finished = [x for x in carriers if x["finish_reason"] != "length"] or carriers
        assert a["source_peer"] == min(finished, key=lambda x: x["position"])["peer"]
    rejected = pq.read_table(layout.round_dir(1) / "rejected.parquet").to_pylist()
    aggregated = len(pq.read_table(layout.aggregates(1)))
    assert len(rejected) + aggregated == 6
    assert any("min_share" in r["reason"] for r in rejected) or aggregated == 6
    names = {m["name"] for m in pq.read_table(layout.metrics(1)).to_pylist()}
    assert {"reliability_est", "agreement_rate", "reliability_gold"} <= names


def test_preflight_reports_reliability_without_training(tmp_path, tiny_model_dirs):
    import subprocess
    import sys

    import yaml

    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool)))
    result = subprocess.run([sys.executable, "-m", "flows.cli", "preflight", str(config),
                             "--questions", "4"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    for fragment in ("estimated accuracy", "gold accuracy (audit)", "strict majority",
                     "reliable aggregate", "llama alone (greedy)", "llama:", "gemma:"):
        assert fragment in result.stdout, result.stdout
    runs = list((tmp_path / "runs" / "preflight" / "tiny").iterdir())
    assert len(runs) == 1 and (runs[0] / "round_1" / "peers.parquet").exists()
    assert not list(runs[0].glob("round_1/checkpoints")) and not (runs[0] / "round_0").exists()


def test_pst_weights_scores_a_fresh_round_and_audits_runs_without_training(
        tmp_path, tiny_model_dirs):
    import subprocess
    import sys

    import yaml

    pool = write_pool(tmp_path / "pool.jsonl", labeled=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool,
                                                 learners=["qwen"])))
    out = tmp_path / "weights.csv"
    result = subprocess.run([sys.executable, "-m", "flows.cli", "weights", str(config),
                             "--questions", "5", "--out", str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    [check] = list((tmp_path / "runs" / "weights" / "tiny").iterdir())
    assert not list(check.glob("round_1/checkpoints")) and not (check / "round_0").exists()
    targets = pq.read_table(check / "round_1" / "targets.parquet").to_pylist()
    assert targets and {t["peer"] for t in targets} == {"qwen"}
    lines = result.stdout.splitlines()
    assert "AUROC right" in lines[1] and lines[2].split()[1:4] == ["1", "qwen", str(len(targets))]
    assert out.read_text().splitlines()[0].startswith("round,peer,n_targets,n_right,n_copied")
    sept = tmp_path / "sept.yaml"
    sept.write_text(yaml.safe_dump(tiny_config(tmp_path, tiny_model_dirs, pool, method="sept")))
    refused = subprocess.run([sys.executable, "-m", "flows.cli", "weights", str(sept)],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "pst weights needs a method with PMI weights" in (
        refused.stdout + refused.stderr)


def test_the_trainer_engine_trains_what_the_loop_trains(tmp_path, tiny_model_dirs):
    """train.engine: trainer (the Hugging Face Trainer) in a whole round: the same run name and
    directory binding as the loop, the same tables and adapters; with report_to mlflow, one
    Trainer run per learner in the run's own store and experiment, its loss per step."""
    from mlflow.tracking import MlflowClient

    loop = run(tmp_path / "loop", tiny_model_dirs, "pst")
    raw = tiny_config(tmp_path / "loop", tiny_model_dirs, tmp_path / "loop" / "pool-True.jsonl",
                      rounds=1, method="pst")
    engine = {**raw["train"], "engine": "trainer", "report_to": "mlflow"}
    assert parse_config(raw | {"train": engine}).run_name == parse_config(raw).run_name
    trainer = run(tmp_path / "trainer", tiny_model_dirs, "pst", train=engine)
    assert training_outputs(trainer, rounds=1) == training_outputs(loop, rounds=1)
    client = MlflowClient(f"sqlite:///{trainer.root.parents[1] / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                              "tags.`pst.kind` = 'trainer'")
    assert sorted(r.data.tags["pst.peer"] for r in runs) == ["gemma", "llama", "qwen"]
    assert all("loss" in r.data.metrics and r.data.tags["pst.round"] == "1" for r in runs)
