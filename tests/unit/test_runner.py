"""The round planner per method (pure: no file read, no model loaded) and the runner's skip rule."""

import pytest

from pst_core.config import parse_config
from pst_core.context import RunContext
from pst_core.runner import plan_round, plan_setup, run_step
from pst_core.steps import Step

PEERS = [{"name": n, "source": f"/models/{n}"} for n in ("a", "b", "c")]


def _config(tmp_path, method, **changes):
    raw = {"experiment": "plan", "output_dir": str(tmp_path / "runs"), "rounds": 2,
           "method": method, "peers": PEERS,
           "data": {"pool": {"name": "pool", "benchmark": "synthetic"},
                    "eval": [{"name": "e1", "benchmark": "synthetic"},
                             {"name": "e2", "benchmark": "synthetic"}]}}
    return parse_config(raw | changes)


def _labels(cfg, r):
    return [[step.label for step in wave] for wave in plan_round(cfg, r)]


EVALUATION = [["evaluate a e1", "evaluate a e2", "evaluate b e1", "evaluate b e2",
               "evaluate c e1", "evaluate c e2"], ["collect eval"], ["metrics"]]
TRAINING = [["make targets a", "make targets b", "make targets c"], ["collect targets"],
            ["train a", "train b", "train c"], ["collect train_log"]]


def test_pst_round_in_config_order(tmp_path):
    assert _labels(_config(tmp_path, "pst"), 1) == [
        ["sample questions"], ["generate turn 1 a"], ["generate turn 2 b"], ["generate turn 3 c"],
        ["collect responses"], ["estimate reliability"], ["aggregate"],
        ["score pmi a", "score pmi b", "score pmi c"],
        ["collect pmi"], *TRAINING, *EVALUATION]


def test_pst_uniform_skips_scoring_and_consistency_ranks_first(tmp_path):
    cfg = _config(tmp_path, {"name": "pst-uniform", "order": "consistency"})
    waves = _labels(cfg, 1)
    assert waves[:2] == [["rank consistency"], ["sample questions"]]
    # Every peer may hold any position: the plan does not depend on the ranking's outcome.
    assert waves[2] == ["generate turn 1 a", "generate turn 1 b", "generate turn 1 c"]
    assert not any(label.startswith("score pmi") for wave in waves for label in wave)


@pytest.mark.parametrize("method", ["sept", "majority"])
def test_solo_methods_generate_alone(tmp_path, method):
    assert _labels(_config(tmp_path, method), 2) == [
        ["sample questions"], ["generate solo a", "generate solo b", "generate solo c"],
        ["collect responses"], *TRAINING, *EVALUATION]


def test_round_zero_and_base_only_evaluate(tmp_path):
    assert _labels(_config(tmp_path, "pst"), 0) == EVALUATION
    base = _config(tmp_path, {"name": "base", "temperatures": [0, 1]}, rounds=0)
    assert _labels(base, 0) == EVALUATION
    assert base.method.eval_temperatures == (0, 1) and not base.method.trains


def test_learners_limit_training_and_evaluation_not_turns(tmp_path):
    cfg = _config(tmp_path, "pst", learners=["b"])
    labels = [label for wave in _labels(cfg, 1) for label in wave]
    assert "generate turn 1 a" in labels and "generate turn 3 c" in labels
    assert [x for x in labels if x.startswith(("train", "score", "evaluate"))] == [
        "score pmi b", "train b", "evaluate b e1", "evaluate b e2"]


def test_planning_touches_nothing(tmp_path):
    cfg = _config(tmp_path, {"name": "pst", "order": "consistency"})
    for r in range(3):
        plan_round(cfg, r)
    assert [s.label for s in plan_setup(cfg)] == ["ingest pool", "ingest e1", "ingest e2"]
    assert not (tmp_path / "runs").exists()


class _Counted(Step):
    kind = "counted"

    def output(self, ctx):
        return ctx.layout.root / "out.txt"

    def timing(self):
        return "counted"

    def run(self, ctx):
        path = self.output(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(int(path.read_text()) + 1 if path.exists() else 1))


def test_run_step_skips_a_done_step_and_times_only_what_ran(tmp_path):
    ctx = RunContext(_config(tmp_path, "pst"))
    step = _Counted(round=1)
    run_step(ctx, step)
    run_step(ctx, step)
    assert step.output(ctx).read_text() == "1"
    assert [p.name for p in (ctx.layout.round_dir(1) / "timings").iterdir()] == ["counted.json"]
