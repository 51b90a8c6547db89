"""The round planner per method (pure: no file read, no model loaded), the runner's skip rule,
and the wall time and peak memory it records per step."""

import json
import resource
from dataclasses import dataclass

import pytest

from pst_core import peak_memory
from pst_core.config import parse_config
from pst_core.context import RunContext
from pst_core.metrics import round_metrics
from pst_core.peak_memory import peak_gib, reset_peak
from pst_core.runner import plan_round, plan_setup, run_step
from pst_core.schemas import EVAL_SCHEMA
from pst_core.steps import Step
from pst_core.store import write_table

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


@dataclass(frozen=True, kw_only=True)
class _Allocating(_Counted):
    """Holds ``mib`` MiB of written (so resident) memory for a moment, then frees it."""

    kind = "allocating"
    mib: int

    def timing(self):
        return f"allocate/{self.mib}"

    def output(self, ctx):
        return ctx.layout.root / f"out_{self.mib}.txt"

    def run(self, ctx):
        held = b"\x01" * (self.mib * 2**20)
        self.output(ctx).parent.mkdir(parents=True, exist_ok=True)
        self.output(ctx).write_text(str(len(held)))
        del held


@pytest.fixture()
def ctx(tmp_path):
    """A run whose round 0 has an empty eval table: ``round_metrics`` reads only the timings."""
    ctx = RunContext(_config(tmp_path, "pst"))
    write_table(EVAL_SCHEMA.empty_table(), ctx.layout.eval(0), EVAL_SCHEMA)
    return ctx


def _recorded_rss(ctx, mib):
    """Run an allocating step; its ``rss_gb`` as recorded and as round 0's metrics report it."""
    run_step(ctx, _Allocating(round=0, mib=mib))
    record = json.loads((ctx.layout.round_dir(0) / "timings" / f"allocate_{mib}.json").read_text())
    metrics = round_metrics(ctx.layout, 0, []).to_pylist()
    assert [m["value"] for m in metrics if m["name"] == f"rss_gb/allocate/{mib}"] == [
        record["rss_gb"]]
    return record["rss_gb"]


def test_run_step_records_the_step_peak_rss_and_metrics_report_it(ctx):
    assert _recorded_rss(ctx, 300) > 300 / 1024


def test_peak_rss_is_reset_before_each_step(ctx):
    if not reset_peak():
        pytest.skip("/proc/self/clear_refs is not writable here: the peak is the process's")
    big, small = _recorded_rss(ctx, 300), _recorded_rss(ctx, 1)
    assert small < big - 200 / 1024  # without the reset it would repeat the 300 MiB step's peak


def test_peak_rss_falls_back_to_the_process_peak_without_proc(monkeypatch, tmp_path):
    monkeypatch.setattr(peak_memory, "CLEAR_REFS", tmp_path / "no" / "clear_refs")
    monkeypatch.setattr(peak_memory, "STATUS", tmp_path / "no" / "status")
    assert not reset_peak()
    process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert process > 0 and peak_gib() == pytest.approx(process / 2**20, rel=0.05)


def test_a_run_directory_resumes_only_under_the_config_that_made_it(tmp_path):
    import yaml

    from pst_core.checks import check_same_run
    from pst_core.errors import ConfigError

    cfg = _config(tmp_path, "pst", run="fixed")
    root = tmp_path / "runs" / "plan" / "fixed"
    check_same_run(cfg, root)  # nothing recorded yet
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    more = _config(tmp_path, "pst", run="fixed", rounds=3,
                   eval={"limit": 5, "gap_rounds": "last"}, output_dir=str(tmp_path / "runs"))
    check_same_run(more, root)  # more rounds, other evaluation: the same run
    with pytest.raises(ConfigError, match=r"method.pmi.beta 1.0 -> 0.5; seed 0 -> 1"):
        check_same_run(_config(tmp_path, {"name": "pst", "pmi": {"beta": 0.5}}, run="fixed",
                               seed=1), root)
    (root / "config.yaml").write_text("[not, a, config")
    with pytest.raises(ConfigError, match=r"config.yaml: not valid YAML.*move the run directory away"):
        check_same_run(cfg, root)


def test_the_run_lock_admits_one_process_and_names_the_holder(tmp_path):
    from pst_core.errors import StoreError
    from pst_core.store import check_unlocked, run_lock

    check_unlocked(tmp_path / "run")  # no lock file: nothing to check, nothing written
    assert not (tmp_path / "run").exists()
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text().startswith("process ")
    with run_lock(tmp_path / "run"):  # released: taken again
        pass
    check_unlocked(tmp_path / "run")
    import fcntl

    with open(tmp_path / "run" / ".lock", "a+") as held:  # as another process would hold it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreError, match="is running this run already"):
            check_unlocked(tmp_path / "run")
