"""Helpers shared by test files (fixtures live in the conftest.py files): tiny experiment
configs, a pool written from the project's own synthetic generator, the training-side outputs
of a run, the benchmark copies in data/benchmarks, and waiting on servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from pst_core.data.synthetic import generate_problems

BENCHMARKS = Path(__file__).resolve().parents[1] / "data" / "benchmarks"


def benchmark_path(name: str) -> Path:
    """A benchmark copy shipped in data/benchmarks (SOURCES.md there)."""
    return BENCHMARKS / f"{name}.jsonl"


def read_benchmark(name: str) -> list[dict]:
    with open(benchmark_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tiny_config(tmp_path: Path, model_dirs: dict, pool: Path, **changes) -> dict:
    """A PST experiment on the three tiny peers: 6 questions a round, 3 eval questions."""
    cfg = {
        "experiment": "tiny", "seed": 0, "rounds": 2, "questions_per_round": 6,
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "pool": {"name": "pool", "path": str(pool), "columns": {"id": "id"}},
            "eval": [{"name": "synthetic-eval", "benchmark": "synthetic",
                      "synthetic": {"n": 40}, "limit": 3}],
        },
        "peers": [
            {"name": "llama", "source": str(model_dirs["llama"]), "dtype": "float32"},
            {"name": "qwen", "source": str(model_dirs["qwen2"]), "dtype": "float32"},
            {"name": "gemma", "source": str(model_dirs["gemma3"]), "dtype": "float32",
             "prompt_format": "fewshot"},
        ],
        "generation": {"max_new_tokens": 12},
        "train": {"num_epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1,
                  "lora_r": 4, "learning_rate": 1e-3},
        "eval": {"max_new_tokens": 8, "n_samples": 2},
    }
    cfg.update(changes)
    return cfg


def write_pool(path: Path, labeled: bool) -> Path:
    """30 synthetic two-step problems as a JSONL pool, with or without their answers."""
    with open(path, "w", encoding="utf-8") as f:
        for row in generate_problems(30, seed=3):
            record = {"id": row.id, "question": row.question}
            if labeled:
                record["answer"] = row.answer
            f.write(json.dumps(record) + "\n")
    return path


def training_outputs(layout, rounds: int = 2, peers=("llama", "qwen", "gemma")) -> dict:
    """Everything the training side produced, minus the gold audit columns and wall times."""
    from safetensors.torch import load_file

    out = {}
    for r in range(1, rounds + 1):
        for name in ("questions", "responses", "peers", "pmi", "train_log", "aggregates",
                     "targets"):
            path = layout.round_dir(r) / f"{name}.parquet"
            if path.exists():
                table = pq.read_table(path)
                audits = [c for c in ("gold_match", "gold_accuracy") if c in table.column_names]
                table = table.drop(audits)
                out[(r, name)] = table.to_pylist()
        for peer in peers:
            weights = load_file(layout.checkpoint(r, peer) / "adapter_model.safetensors")
            out[(r, peer)] = {k: v.tolist() for k, v in sorted(weights.items())}
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_call(url: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``, and everything it spawned.

    A server that ignores SIGTERM for 30 s (a loaded machine) is killed with its process group:
    a leftover ``pst serve`` keeps running its schedule and eats the CPU of whatever runs next.
    """
    from flows.servers import stop_group

    stop_group(process, grace_s=30)


def naive_logprobs(backend, context: str, continuation: str):
    """Reference: full-vocabulary logits at every position, one unpadded sequence."""
    import torch

    from pst_core.models.tokens import encode_continuation

    ctx = backend.encode(context)
    cont = encode_continuation(backend.tokenizer, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].float()
    logp = logits.log_softmax(-1)
    return torch.stack([logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)])


VLLM_PYTHON = os.environ.get("PST_VLLM_PYTHON")


def needs_vllm_python(what: str):
    """Skip unless PST_VLLM_PYTHON names a python with ``what`` (the opt-in vLLM tests)."""
    import pytest

    return pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).exists(),
                              reason=f"set PST_VLLM_PYTHON to a python with {what} "
                                     "(bench/vllm_env.sh builds one)")
