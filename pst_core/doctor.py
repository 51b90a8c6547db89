"""`pst doctor`: what a machine (a GPU box on its first day) needs before a real run, each item
with a verdict a person can act on.

1. **Versions.** The installed torch, CUDA build, transformers, peft, vLLM, Prefect, MLflow and
   fastapi, and whether every requirement the installed packages state about each other holds
   (vLLM pins torch and caps transformers and fastapi; Prefect floors fastapi): a broken
   combination fails here in a line, not at an import deep in a run.
2. **The device.** Whether it exists, whether bf16 is native there (on a CPU without AVX-512
   BF16 it is emulated and about 4x slower than fp32), and the memory free now.
3. **A config's peers.** From each peer's model config (no weights loaded): weights, KV cache
   per decoded row, and the rows that fit in the free memory at the config's token budgets.
4. **The pipeline.** Two rounds of PST on three tiny random-init peers on the device (the
   offline peers' architectures), every stage, written tables checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pst_core.config import ExperimentConfig

PACKAGES = ("torch", "transformers", "peft", "accelerate", "vllm", "prefect", "fastapi",
            "mlflow", "pst")


@dataclass(frozen=True)
class Check:
    """One item: ``ok`` True (fine), False (fix it: ``detail`` says how) or None (a fact)."""

    item: str
    ok: bool | None
    detail: str


def check_versions() -> list[Check]:
    """The installed versions, and every requirement among the installed packages that fails."""
    from packaging.requirements import Requirement

    installed = {}
    for name in PACKAGES:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    checks = [Check("versions", None, ", ".join(f"{k} {v}" for k, v in installed.items()))]
    for name in installed:
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            target = requirement.name.lower().replace("_", "-")
            if requirement.marker is not None or target not in installed:
                continue  # extras and platform-specific lines; packages that are not here
            version = installed[target]
            if not requirement.specifier.contains(version, prereleases=True):
                checks.append(Check(
                    f"{name} needs {requirement}", False,
                    f"{target} {version} is installed; install a {target} that satisfies it "
                    f"(pip install '{requirement}'), or another {name}"))
    if len(checks) == 1:
        checks.append(Check("requirements", True, "every installed package's requirements on "
                            "the others hold"))
    return checks


def check_device(device: str) -> list[Check]:
    """The device exists, whether bf16 is faster than fp32 there, and how much memory is free."""
    import torch

    from pst_core.models.memory import available_bytes
    from pst_core.models.source import cpu_prefers_bf16

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return [Check("device", False, f"{device}: torch {torch.__version__} sees no CUDA "
                          "GPU (a CPU build of torch, or no driver); install a CUDA build")]
        out = [Check("device", True, f"{torch.cuda.device_count()} GPU(s), CUDA "
                     f"{torch.version.cuda}")]
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out.append(Check(f"cuda:{i}", None, f"{torch.cuda.get_device_name(i)}: "
                             f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
        bf16 = torch.cuda.is_bf16_supported()
        out.append(Check("bf16", None, "native: dtype auto picks it" if bf16 else
                         "not supported on this GPU: dtype auto picks float16"))
        return out
    free = available_bytes(torch.device("cpu"))
    bf16 = cpu_prefers_bf16()
    return [Check("device", True, f"CPU, {torch.get_num_threads()} threads, "
                  f"{free / 2**30:.1f} GiB available"),
            Check("bf16", None, "AMX: faster than fp32, dtype auto picks bf16" if bf16 else
                  "slower than fp32 on a CPU without AMX: dtype auto picks fp32"),
            Check("on a GPU", None, "with --device cuda this checks the CUDA build torch has, "
                  "every GPU's name and free memory, bf16 support there, sizes the peers against "
                  "that memory, and runs the tiny rounds spread over the GPUs")]


def check_peers(cfg: ExperimentConfig, device: str) -> list[Check]:
    """Per peer: weights, KV cache per decoded row and the rows that fit, from its config."""
    import torch
    from transformers import AutoConfig

    from pst_core.models.memory import MEMORY_SHARE, available_bytes, row_bytes

    target = torch.device("cuda" if device.startswith("cuda") else "cpu")
    free = available_bytes(target) if target.type == "cpu" or torch.cuda.is_available() else 0
    tokens = max(cfg.generation.max_new_tokens, cfg.eval.max_new_tokens) + 512  # + a prompt
    out = []
    for peer in cfg.peers:
        try:
            location, revision = _config_location(peer)
            config = AutoConfig.from_pretrained(location, revision=revision)
        except Exception as e:  # noqa: BLE001 - not fetched, offline, gated: say so, go on
            out.append(Check(f"peer {peer.name}", None, f"{peer.source}: sizes unknown: "
                             f"{str(e).splitlines()[0][:160]}"))
            continue
        text = config.get_text_config()
        element = 4 if peer.dtype == "float32" or (peer.dtype == "auto" and device == "cpu"
                                                   ) else 2
        params = _parameters(text)
        weights, per_row = params * element, row_bytes(text, tokens, element)
        rows = int(MEMORY_SHARE * (free - weights) // per_row)  # as rows_that_fit, once loaded
        out.append(Check(
            f"peer {peer.name}", rows > 0,
            f"{params / 1e9:.2f}B parameters: {weights / 2**30:.1f} GiB of weights, "
            f"{per_row / 2**20:.0f} MiB per row of {tokens} tokens; about {max(rows, 0)} rows "
            f"fit in {free / 2**30:.1f} GiB free" + ("" if rows > 0 else
                                                     ": too big for this device")))
    return out


def _config_location(peer) -> tuple[str, str | None]:
    """Where a peer's model config is read without fetching or converting weights: an offline
    model's converted copy (made on its first use), a GGUF's too, a directory, a Hub id (from
    the cache or the Hub)."""
    from pst_core.errors import ModelError
    from pst_core.models.offline import cache_dir, get_offline_model
    from pst_core.models.source import resolve_source

    source = resolve_source(peer.source, peer.revision)
    if source.kind in ("local", "hub"):
        return source.location, source.revision
    if source.kind == "offline":
        converted = cache_dir() / "converted" / get_offline_model(source.location).sha256[:16]
        if (converted / "config.json").exists():
            return str(converted), None
        raise ModelError(f"not converted on this machine yet (pst models fetch "
                         f"{source.location}; its first run converts it)")
    raise ModelError("a GGUF file: its config is read when it is first converted")


def _parameters(text) -> int:
    """A decoder's parameter count from its shape (embeddings, attention, MLP, norms)."""
    hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    kv = getattr(text, "num_key_value_heads", None) or heads
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * hidden * text.intermediate_size
    tied = getattr(text, "tie_word_embeddings", False)
    return vocab * hidden * (1 if tied else 2) + layers * (attention + mlp + 2 * hidden)


def run_tiny_pipeline(work: Path, device: str, width: int = 64) -> dict:
    """Two rounds of PST on three tiny random-init peers (Llama, Qwen2, Gemma3 architectures)
    on ``device`` (spread over the GPUs when there are several); wall time and what was written.
    """
    import torch

    from pst_core.config import parse_config
    from pst_core.data.synthetic import generate_problems
    from pst_core.models.tiny import save_random_model, tiny_configs, train_tokenizer
    from pst_core.runner import Runner

    tokenizer = train_tokenizer()
    models = {name: save_random_model(work / "models" / name, config, tokenizer)
              for name, config in tiny_configs(tokenizer, width=width).items()}
    pool = work / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": r.id, "question": r.question, "answer": r.answer})
                            + "\n" for r in generate_problems(30, seed=3)), encoding="utf-8")
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    devices = [f"cuda:{i % gpus}" for i in range(3)] if gpus > 1 else [device] * 3
    dtype = "float32" if device == "cpu" else "auto"
    cfg = parse_config({
        "experiment": "doctor", "seed": 0, "rounds": 2, "questions_per_round": 6,
        "output_dir": str(work / "runs"),
        "data": {"pool": {"name": "pool", "path": str(pool), "columns": {"id": "id"},
                          "split": "all"},
                 "eval": [{"name": "synthetic-eval", "benchmark": "synthetic",
                           "synthetic": {"n": 40}, "split": "all", "limit": 4}]},
        "peers": [
            {"name": "llama", "source": str(models["llama"]), "dtype": dtype, "device": devices[0]},
            {"name": "qwen", "source": str(models["qwen2"]), "dtype": dtype, "device": devices[1]},
            {"name": "gemma", "source": str(models["gemma3"]), "dtype": dtype,
             "device": devices[2], "prompt_format": "fewshot"},
        ],
        "generation": {"max_new_tokens": 16},
        "train": {"num_epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1,
                  "lora_r": 4, "learning_rate": 1e-3},
        "eval": {"max_new_tokens": 12, "n_samples": 2},
    }, source="pst doctor")
    start = time.perf_counter()
    layout = Runner(cfg).run()
    written = {
        "eval tables (rounds 0-2)": all(layout.eval(r).exists() for r in range(3)),
        "adapters (rounds 1-2)": all(
            (layout.checkpoint(r, p) / "adapter_model.safetensors").exists()
            for r in (1, 2) for p in ("llama", "qwen", "gemma")),
        "pmi tables (rounds 1-2)": all(layout.pmi(r).exists() for r in (1, 2)),
    }
    return {"devices": devices, "wall_s": round(time.perf_counter() - start, 1), **written,
            "ok": all(written.values())}
