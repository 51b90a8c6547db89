"""The install pins against vLLM's: pyproject.toml must leave a version of every shared package
that the vLLM wheels of the ``gpu`` extra accept, checked without network against their
requirements recorded in data/vllm_requirements.json (tests/integration/test_vllm_pins.py
re-reads them from the registry with PST_NETWORK_TESTS=1)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "data" / "vllm_requirements.json"


def project_requirements() -> tuple[dict[str, SpecifierSet], dict[str, list[Requirement]]]:
    """The base dependencies by package name, and each extra's requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        base[canonicalize_name(req.name)] = req.specifier
    extras = {name: [Requirement(r) for r in reqs]
              for name, reqs in project["optional-dependencies"].items()}
    return base, extras


def conflicts(ours: dict[str, SpecifierSet], theirs: list[str]) -> list[str]:
    """Requirements in ``theirs`` (METADATA lines) that no version allowed by ``ours`` meets.

    The candidate versions are the bounds named in either specifier (ranges in these files have
    inclusive lower bounds), so ``>=5.19,<5.24`` against ``>=5.16.1,<5.21`` finds 5.19.
    """
    bad = []
    for line in theirs:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name not in ours or (req.marker is not None and not req.marker.evaluate()):
            continue
        spec = ours[name] & req.specifier
        bounds = {Version(s.version) for s in spec if "*" not in s.version}
        if bounds and not any(spec.contains(v, prereleases=True) for v in bounds):
            bad.append(f"{line} (ours: {ours[name]})")
    return bad


def test_base_pins_leave_room_for_every_recorded_vllm():
    base, _ = project_requirements()
    recorded = json.loads(RECORDED.read_text())["packages"]
    problems = {wheel: conflicts(base, reqs) for wheel, reqs in recorded.items()}
    assert not any(problems.values()), problems


def test_gpu_and_flows_extras_leave_room_for_every_recorded_vllm():
    """`.[gpu,flows]` is one environment: the flows extra's Prefect and fastapi pins leave a
    version every recorded vLLM accepts (Prefect 3.7.8+ would not: fastapi>=0.139)."""
    base, extras = project_requirements()
    (vllm,) = [r for r in extras["gpu"] if r.name == "vllm"]
    recorded = json.loads(RECORDED.read_text())["packages"]
    versions = [w.split("==")[1] for w in recorded if w.startswith("vllm==")]
    assert versions and all(vllm.specifier.contains(v) for v in versions), (vllm, versions)
    assert "prefect" not in base and "fastapi" not in base  # the library needs neither
    flows = {canonicalize_name(r.name): r.specifier for r in extras["flows"]}
    for wheel, requirements in recorded.items():
        if wheel.startswith("vllm"):
            assert conflicts(flows, requirements) == [], wheel
    assert not flows["prefect"].contains("3.7.8")


def test_ci_runs_the_unit_tier_on_the_lowest_claimed_transformers():
    base, _ = project_requirements()
    lowest = re.search(r'"transformers==([\d.]+)"', (ROOT / ".ci" / "run").read_text()).group(1)
    lower_bounds = [s.version for s in base["transformers"] if s.operator == ">="]
    assert base["transformers"].contains(lowest)
    assert [Version(lowest)] == [Version(v) for v in lower_bounds]


def test_conflicts_finds_disjoint_ranges():
    ours = {"transformers": SpecifierSet(">=5.23,<5.24"), "torch": SpecifierSet(">=2.6")}
    assert conflicts(ours, ["transformers<5.21.0,>=5.16.1", "torch==2.14.0"]) == [
        "transformers<5.21.0,>=5.16.1 (ours: <5.24,>=5.23)"]
    assert conflicts(ours, ["transformers>=5.20", "torch==2.14.0", "regex"]) == []
