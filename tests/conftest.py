"""Shared fixtures (tiny random-init models built from configs) and the test tiers.

The tiny models are real transformers models (Llama, Qwen2, Gemma3 architectures) with a real
BPE tokenizer trained here on the project's synthetic word problems, saved to disk and loaded
through the project's own loading code. They answer nonsense, but they exercise every mechanism
in seconds on a CPU, without ../shared.

Tiers: plain ``python -m pytest`` runs the unit tier (tests/unit: tiny models, pure functions,
about a minute); ``python -m pytest --integration`` adds tests/integration (whole runs on tiny
models, the benchmark copies in ../shared, the real SmolLM2) and tests/flows (Prefect, MLflow,
servers, a browser). CI runs both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 600-token byte-level BPE trained on the project's synthetic word problems, with BOS
    and ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from pst_core.data.synthetic import generate_problems

    texts = [p.question for p in generate_problems(600, seed=1)]
    texts += ["The answer is 42.", "Question: Answer: Think step by step."]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Prepend BOS like Llama/Gemma tokenizers do, so double-BOS bugs would show.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="<|im_end|>",
        chat_template=CHATML,
    )


def _save_tiny(path: Path, config, tokenizer) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _common(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from transformers import LlamaConfig

    config = LlamaConfig(**_common(tiny_tokenizer), tie_word_embeddings=True)
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), config, tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer, tiny_llama_dir) -> dict[str, Path]:
    """Tiny models of the three offline peers' architectures (Llama, Qwen2, Gemma3)."""
    from transformers import Gemma3TextConfig, Qwen2Config

    qwen = Qwen2Config(**_common(tiny_tokenizer), tie_word_embeddings=False)
    gemma = Gemma3TextConfig(**_common(tiny_tokenizer), head_dim=16, sliding_window=8,
                             final_logit_softcapping=30.0)
    return {
        "llama": tiny_llama_dir,
        "qwen2": _save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), qwen, tiny_tokenizer),
        "gemma3": _save_tiny(tmp_path_factory.mktemp("tiny-gemma3"), gemma, tiny_tokenizer),
    }


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
    # Offline settings of STACK.md, for every test and every subprocess it starts, and a
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
