"""`pst compare` on real (tiny) runs: one table across methods, base as round 0 and reference."""

import csv

import pytest
from mlflow.tracking import MlflowClient

from pst_core.compare import across_seeds, compare, config_sets, load_run, pairwise
from pst_core.errors import ConfigError
from pst_core.report import publish
from tests.integration.test_methods_tiny import run

EVAL = {"max_new_tokens": 8, "n_samples": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dirs):
    tmp = tmp_path_factory.mktemp("compare")
    base = run(tmp, tiny_model_dirs, "base", rounds=0, run="base", eval=EVAL)
    sept = run(tmp, tiny_model_dirs, "sept", run="sept", eval=EVAL | {"initial": False})
    uniform = run(tmp, tiny_model_dirs, "pst-uniform", run="uniform", eval=EVAL)
    return tmp, [base.root, sept.root, uniform.root]


def test_table_has_every_method_with_paired_deltas(runs):
    _, dirs = runs
    rows = compare([load_run(d) for d in dirs]).to_pylist()
    assert {(r["method"], r["round"]) for r in rows} == {
        ("base", 0), ("sept", 0), ("sept", 1), ("pst-uniform", 0), ("pst-uniform", 1)}
    assert {r["peer"] for r in rows} == {"llama", "qwen", "gemma"}
    base = {(r["peer"], r["benchmark"]): r for r in rows if r["method"] == "base"}
    for r in rows:
        assert r["n_questions"] == 3 and r["delta_lo"] <= r["delta_em"] <= r["delta_hi"]
        reference = base[(r["peer"], r["benchmark"])]
        assert r["delta_em"] == pytest.approx(r["em"] - reference["em"])
        if r["round"] == 0 and r["method"] != "base":  # the untuned model at greedy decoding
            assert r["decoding"] == "greedy" and r["em"] <= reference["em"]
        assert 0 < r["mean_tokens"] <= EVAL["max_new_tokens"] and 0 <= r["truncated"] <= 1
        if r["round"] == 1:  # sept and pst-uniform: every weight is 1
            assert r["n_targets"] is not None
            assert r["weighted_label_acc"] == pytest.approx(r["pseudo_label_acc"])
    # sept took its round 0 from the base run: the same greedy answers as pst-uniform's own.
    em0 = {(r["method"], r["peer"]): r["em"] for r in rows if r["round"] == 0}
    assert all(em0[("sept", p)] == em0[("pst-uniform", p)] for p in ("llama", "qwen", "gemma"))


def test_pairwise_differences_between_trained_methods(runs):
    _, dirs = runs
    loaded = [load_run(d) for d in dirs]
    em = {(r["method"], r["peer"]): r["em"] for r in compare(loaded).to_pylist() if r["round"] == 1}
    pairs = pairwise(loaded)
    assert {(d["method"], d["other"]) for d in pairs} == {("pst-uniform", "sept")}  # base left out
    assert {d["peer"] for d in pairs} == {"llama", "qwen", "gemma"}
    for d in pairs:
        assert d["n_questions"] == 3 and d["delta_lo"] <= d["delta_em"] <= d["delta_hi"]
        assert d["delta_em"] == pytest.approx(em[("pst-uniform", d["peer"])] - em[("sept", d["peer"])])


def test_publish_writes_report_csv_plot_and_an_mlflow_run(runs, tmp_path, monkeypatch):
    _, dirs = runs
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    notes = tmp_path / "notes.md"
    notes.write_text("Tiny random models: no meaning.\n")
    files = publish(dirs, tmp_path / "docs" / "RESULTS.md", notes)
    text = files["markdown"].read_text()
    assert "Tiny random models: no meaning." in text and "pst compare " in text
    assert "| sept | qwen |" in text and "![EM by round](img/results-em.png)" in text
    assert "## Between methods" in text and "| pst-uniform | sept | qwen |" in text
    assert "## Training targets" in text and "| pst-uniform | qwen | 1 |" in text
    assert "## Peers' reliability" in text and "| pst-uniform | 1 | llama |" in text
    assert "## How it was made" in text and f"run directory `{dirs[1]}`" in text
    assert files["plot"].stat().st_size > 0
    with open(files["csv"]) as f:
        assert len(list(csv.DictReader(f))) == 15  # 5 (method, round) x 3 peers
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    [comparison] = client.search_runs([experiment.experiment_id], "tags.`pst.kind` = 'comparison'")
    assert {"delta_em/sept/qwen/synthetic-eval",
            "delta_em/pst-uniform-vs-sept/qwen/synthetic-eval"} <= comparison.data.metrics.keys()
    assert {a.path for a in client.list_artifacts(comparison.info.run_id)} >= {
        "RESULTS.md", "RESULTS.csv", "results-em.png"}


def test_two_config_sets_in_one_report(runs, tiny_model_dirs, tmp_path, monkeypatch):
    """Runs of two experiments: each set compared within itself, under a heading of its own."""
    tmp, dirs = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    other = run(tmp, tiny_model_dirs, "base", rounds=0, run="base",
                experiment="tiny-b", eval=EVAL | {"limit": 2})
    files = publish([*dirs, other.root], tmp_path / "RESULTS.md")
    text = files["markdown"].read_text()
    assert text.startswith("# Results: tiny, tiny-b")
    reading, details = text.split("\n## Set `tiny`\n", 1)  # every set's reading comes first
    assert reading.index("### Set `tiny`") < reading.index("### Set `tiny-b`")
    assert "No trained method among the runs" in reading.split("### Set `tiny-b`")[1]
    assert details.index("### Exact match") < details.index("\n## Set `tiny-b`\n")
    assert details.count("### Exact match against the base model") == 2
    assert {"plot tiny", "plot tiny-b"} <= files.keys()
    assert "![EM by round](img/results-tiny-b-em.png)" in text
    with open(files["csv"]) as f:
        experiments = [row["experiment"] for row in csv.DictReader(f)]
    assert experiments.count("tiny") == 15 and experiments.count("tiny-b") == 3


def test_a_second_seed_is_its_own_set_sharing_base_and_read_across_seeds(
        runs, tiny_model_dirs, tmp_path, monkeypatch):
    """A seed-1 run is compared within its seed (seed-0 base as its round 0 and reference, not
    costed twice) and against the seed-0 run of its method: EM per seed, mean and spread."""
    tmp, dirs = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    seed1 = run(tmp, tiny_model_dirs, "sept", run="sept-seed1", seed=1,
                eval=EVAL | {"initial": False}).root
    loaded = [load_run(d) for d in [*dirs, seed1]]
    with pytest.raises(ConfigError, match="several seeds"):
        compare(loaded)
    zero, one = config_sets(loaded)
    assert [r.root for r in zero] == dirs and [r.root for r in one] == [dirs[0], seed1]
    rows = [*compare(zero).to_pylist(), *compare(one).to_pylist()]
    assert {r["seed"] for r in rows if r["method"] == "sept"} == {0, 1}
    base = {r["peer"]: r["em"] for r in rows if r["method"] == "base" and r["seed"] == 1}
    for r in rows:
        if r["method"] == "sept" and r["seed"] == 1:
            assert r["delta_em"] == pytest.approx(r["em"] - base[r["peer"]])
    spread = across_seeds(rows, [*pairwise(zero), *pairwise(one)], rival="sept")
    assert {(a["method"], a["peer"]) for a in spread} == {("sept", p) for p in base}
    em = {(r["seed"], r["peer"]): r["em"] for r in rows if r["method"] == "sept" and r["round"] == 1}
    for a in spread:
        assert a["seeds"] == [0, 1] and a["em"] == [em[(0, a["peer"])], em[(1, a["peer"])]]
        assert a["em_spread"] == pytest.approx(abs(a["em"][0] - a["em"][1]))
    # pst-uniform ran on seed 0 only: no spread; its seed-0 delta vs sept is in pairwise.
    spread = across_seeds(rows, [*pairwise(zero), *pairwise(one)], rival="pst-uniform")
    assert all(a["vs_rival"][0]["delta_em"] == -next(
        d["delta_em"] for d in pairwise(zero) if d["peer"] == a["peer"]) and a["vs_rival"][1] is None
        for a in spread)
    text = publish([*dirs, seed1], tmp_path / "RESULTS.md")["markdown"].read_text()
    assert "## Set `tiny`, seed 0" in text and "## Set `tiny`, seed 1" in text
    assert "![EM by round](img/results-tiny-seed1-em.png)" in text
    across = text.split("### Across seeds\n", 1)[1].split("\n## ", 1)[0]
    assert across.count("- sept, ") == 3 and "seeds 0, 1, round 1/1: EM " in across
    seed1_part = text.split("\n## Set `tiny`, seed 1\n")[1]
    assert "shared with an earlier set" in seed1_part and "| base | base |" not in seed1_part


def test_runs_on_different_eval_sets_are_refused(runs, tiny_model_dirs):
    tmp, dirs = runs
    other = run(tmp, tiny_model_dirs, "base", rounds=0, run="other", eval=EVAL | {"limit": 2})
    with pytest.raises(ConfigError, match="not comparable"):
        compare([load_run(dirs[0]), load_run(other.root)])


def test_a_run_with_more_rounds_is_its_own_set_and_its_gap_settings_may_differ(
        runs, tiny_model_dirs, tmp_path, monkeypatch):
    """The same method on the same seed run for 2 rounds instead of 1 is not a duplicate of the
    1-round run: it forms its own set, sharing base (described once); sampling its GV gap at the
    last round only does not make it incomparable (greedy EM is what the deltas pair)."""
    tmp, dirs = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    longer = run(tmp, tiny_model_dirs, "sept", rounds=2, run="sept-2r",
                 eval=EVAL | {"initial": False, "gap_rounds": "last"}).root
    loaded = [load_run(d) for d in [*dirs, longer]]
    one, two = config_sets(loaded)
    assert [r.root for r in one] == dirs and [r.root for r in two] == [dirs[0], longer]
    rows = compare(two).to_pylist()
    assert {(r["method"], r["round"]) for r in rows} == {
        ("base", 0), ("sept", 0), ("sept", 1), ("sept", 2)}
    assert all(r["rounds"] == 2 for r in rows)
    text = publish([*dirs, longer], tmp_path / "RESULTS.md")["markdown"].read_text()
    assert "## Set `tiny`, 1 round\n" in text and "## Set `tiny`, 2 rounds" in text
    assert "![EM by round](img/results-tiny-2r-em.png)" in text
    assert text.count("| base | base |") == 1  # costed in the first set only
