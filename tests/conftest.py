"""Shared fixtures (tiny random-init models built from configs) and the test tiers.

The tiny models (``pst_core.models.tiny``) are real transformers models (Llama, Qwen2, Gemma3
architectures) with a real BPE tokenizer trained on the project's synthetic word problems, saved
to disk and loaded through the project's own loading code. They answer nonsense, but they
exercise every mechanism in seconds on a CPU.

Tiers: plain ``python -m pytest`` runs the unit tier (tests/unit: tiny models, pure functions,
about a minute); ``python -m pytest --integration`` adds tests/integration (whole runs on tiny
models, the benchmark copies in data/benchmarks, the real SmolLM2) and tests/flows (Prefect, MLflow,
servers, a browser). CI runs both.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from pst_core.models.tiny import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from pst_core.models.tiny import save_random_model, tiny_configs

    return save_random_model(tmp_path_factory.mktemp("tiny-llama"),
                             tiny_configs(tiny_tokenizer)["llama"], tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer, tiny_llama_dir) -> dict[str, Path]:
    """Tiny models of the three offline peers' architectures (Llama, Qwen2, Gemma3)."""
    from pst_core.models.tiny import save_random_model, tiny_configs

    configs = tiny_configs(tiny_tokenizer)
    return {"llama": tiny_llama_dir, **{
        name: save_random_model(tmp_path_factory.mktemp(f"tiny-{name}"), configs[name],
                                tiny_tokenizer) for name in ("qwen2", "gemma3")}}


@pytest.fixture(autouse=True)
def _older_objects_frozen():
    """Hide the objects alive when a test starts (imported modules, session fixtures) from the
    garbage collector. ``release_memory`` runs a full collection after every step; with torch,
    transformers, MLflow and Prefect loaded one takes 0.2-0.4 s on a 2-core CI machine, most of a
    tiny run (46 of them: 11.6 s of 14 s for a one-round pst-paper run, 1.1 s with this). What a
    test creates, its models included, stays collectable."""
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty model cache for tests that must not touch the shared one."""
    monkeypatch.setenv("PST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pytest_addoption(parser):
    parser.addoption("--integration", action="store_true",
                     help="also run tests/integration and tests/flows (whole runs, servers, "
                     "real models); CI does")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--integration"):
        return
    unit = Path(__file__).parent / "unit"
    deselected = [item for item in items if unit not in Path(item.fspath).parents]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if unit in Path(item.fspath).parents]


def pytest_configure(config):
    # The offline settings, for every test and every subprocess it starts, and a
    # Prefect home of the test session's own (it holds Prefect's database).
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pst-prefect-home-"))
    for key, value in {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }.items():
        os.environ.setdefault(key, value)
