"""The experiment config: every shipped YAML loads; errors name the field and the file."""

from pathlib import Path

import pytest

from pst_core.config import ExperimentConfig, describe_fields, fields_markdown, load_config
from pst_core.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "data" / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig) and len(cfg.peers) >= 2


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """
experiment: t
data: {pool: {name: p, benchmark: synthetic}}
peers: [{name: a, source: smollm2-135m-instruct}, {name: b, source: gemma3-270m}]
"""


def test_unknown_key_names_its_path(tmp_path):
    path = _write(tmp_path, BASE + "method: {pmi: {betta: 1}}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: method\.pmi\.betta: unknown field"):
        load_config(path)
    moved = _write(tmp_path, BASE + "method: {name: pst}\npmi: {beta: 1}\n")
    with pytest.raises(ConfigError, match=r"pmi: moved into the method section: write it as "
                                          r"method\.pmi"):
        load_config(moved)


def test_bad_value_names_path_and_value(tmp_path):
    path = _write(tmp_path, BASE + "method: {name: pst, pmi: {beta: -1}}\n")
    with pytest.raises(ConfigError, match=r"method\.pmi\.beta: Input should be greater than or equal to 0 \(got -1\)"):
        load_config(path)


def test_nested_list_error_path(tmp_path):
    path = _write(tmp_path, BASE.replace("source: smollm2-135m-instruct", "source: x, batch_size: 0"))
    with pytest.raises(ConfigError, match=r"peers\.0\.batch_size: should be a positive integer or auto"):
        load_config(path)


def test_all_errors_on_one_line(tmp_path):
    path = _write(tmp_path, BASE + "rounds: -1\ngeneration: {top_p: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and "rounds:" in message and "generation.top_p:" in message


def test_overrides(tmp_path):
    path = _write(tmp_path, BASE)
    cfg = load_config(path, ["method.pmi.beta=0.5", "peers.0.batch_size=4", "train.finetune=full"])
    assert (cfg.method.pmi.beta, cfg.peers[0].batch_size, cfg.train.finetune) == (0.5, 4, "full")
    assert load_config(path, ["method=sept", "method.temperature=0.1"]).method.temperature == 0.1
    with pytest.raises(ConfigError, match="not an index"):
        load_config(path, ["peers.3.batch_size=4"])


def test_run_name_is_a_stable_hash_of_the_config(tmp_path):
    path = _write(tmp_path, BASE)
    a, b = load_config(path), load_config(path, ["output_dir=elsewhere"])
    c = load_config(path, ["seed=1"])
    assert a.run_name == b.run_name != c.run_name
    # Evaluation settings do not make another experiment: the same run evaluates more.
    evaluated = load_config(path, ["eval.limit=9", "data.eval=[{name: e, benchmark: synthetic}]"])
    assert evaluated.run_name == a.run_name
    assert load_config(path, ["train.lora_r=4"]).run_name != a.run_name
    assert load_config(path, ["run=mine"]).run_name == "mine"


def test_duplicate_peer_names(tmp_path):
    path = _write(tmp_path, BASE.replace("{name: b, source: gemma3-270m}", "{name: a, source: y}"))
    with pytest.raises(ConfigError, match="peer names must be unique, repeated: a"):
        load_config(path)


def test_method_requirements(tmp_path):
    one_peer = BASE.replace(", {name: b, source: gemma3-270m}", "")
    with pytest.raises(ConfigError, match="config: method pst needs at least 2 peers, got 1"):
        load_config(_write(tmp_path, one_peer))
    assert load_config(_write(tmp_path, one_peer + "method: sept\n")).method.name == "sept"
    with pytest.raises(ConfigError, match="method base trains nothing: set rounds: 0"):
        load_config(_write(tmp_path, BASE + "method: base\n"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1,\n"))


def test_every_field_is_described():
    rows = describe_fields()
    assert {"method.pmi.beta", "method.temperatures", "peers[].source", "data.pool.columns.question", "train.lora_r"} <= {
        r[0] for r in rows
    }
    assert all(r[3] for r in rows if r[0].count(".") or r[0] in ("experiment", "seed")), [
        r[0] for r in rows if not r[3]
    ]


def test_the_configuration_reference_is_the_generated_table():
    """docs/configuration.md holds what `pst validate --fields --markdown` prints, every field."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(
        encoding="utf-8")
    assert fields_markdown() in doc, "regenerate it: pst validate --fields --markdown"
    assert all(f"`{row[0]}`" in doc for row in describe_fields())


def test_include_merges_sections_and_replaces_lists(tmp_path):
    (tmp_path / "_common.yaml").write_text(BASE + "eval: {n_samples: 3, limit: 5}\n")
    variant = tmp_path / "sept.yaml"
    variant.write_text("include: _common.yaml\nmethod: sept\neval:\n  limit: 7\n"
                       "peers: [{name: c, source: gemma3-270m}]\n")
    cfg = load_config(variant)
    assert (cfg.method.name, cfg.eval.n_samples, cfg.eval.limit) == ("sept", 3, 7)
    assert [p.name for p in cfg.peers] == ["c"]
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ConfigError, match=r"loop.yaml: include: loop.yaml includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "gone.yaml").write_text("include: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found \(included by"):
        load_config(tmp_path / "gone.yaml")


def test_learners_must_be_peers(tmp_path):
    with pytest.raises(ConfigError, match="learners nobody are not peer names"):
        load_config(_write(tmp_path, BASE + "learners: [nobody]\n"))
    assert load_config(_write(tmp_path, BASE + "learners: [b]\n")).learner_names == ["b"]


def test_configs_of_the_first_layout_still_load(tmp_path):
    """Run directories written before methods were sections (``pst compare`` reads them)."""
    old = BASE + ("method: majority\nmajority: {n_samples: 6}\nsept: {temperature: 0.1}\n"
                  "aggregate: {method: final}\ntrain: {method: full}\n")
    cfg = load_config(_write(tmp_path, old))
    assert (cfg.method.name, cfg.method.n_samples, cfg.train.finetune) == ("majority", 6, "full")
    pst = load_config(_write(tmp_path, BASE + "aggregate: {method: final}\npmi: {beta: 2}\n"
                                      "generation: {order: rotate, max_new_tokens: 9}\n"))
    assert (pst.method.aggregate.rule, pst.method.pmi.beta, pst.method.order) == ("last", 2, "rotate")
    assert pst.generation.max_new_tokens == 9


def test_representative_fits_the_rule_and_old_records_keep_their_meaning(tmp_path):
    def aggregate(text):
        return load_config(_write(tmp_path, BASE + text)).method.aggregate

    assert aggregate("method: pst-robust\n").representative == "earliest"
    with pytest.raises(ConfigError, match="method.aggregate: representative 'reliable' does not "
                                          "apply to rule 'vote': use one of latest, earliest"):
        aggregate("method: {name: pst, aggregate: {representative: reliable}}\n")
    # Recorded before representative applied to `reliable`: the dumped default `latest` there
    # meant the rule's own (the most reliable carrier), and `last` ignores it.
    recorded = "method: {name: pst-robust, aggregate: {rule: %s, representative: latest}}\n"
    assert aggregate(recorded % "reliable").representative is None
    assert aggregate(recorded % "last").representative is None
