"""The GPU check: the whole pipeline on a device, then speed against the device's compute bound.

Needs no network and no model download (everything is random-init, built from configs):

1. tiny Llama, Qwen2 and Gemma3 peers (the offline peers' architectures) with a BPE tokenizer
   trained on the project's synthetic problems run ``pst_core.runner.Runner`` for 2 rounds of
   PST: generation, PMI scoring, LoRA training, evaluation of the merged models, round 2 from
   round 1's adapters. On a machine with several GPUs the peers are spread over them
   (``peers[].device: cuda:N``).
2. a Qwen2.5-1.5B-shaped model (random weights; ``--small``: a narrow 4-layer one) measures
   generation and scoring tokens/s through the transformers backend, next to the matmul FLOP/s
   measured in the same run (the compute bound), and, when vLLM is importable, through the vLLM
   backend too.

Usage:

    python bench/gpu_check.py                       # a CUDA machine: under 8 minutes
    python bench/gpu_check.py --device cpu --small  # here: a few minutes
    python bench/gpu_check.py --json out.json       # also write the figures

Exits non-zero when the pipeline fails or a stage's output is missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pst_core.doctor import run_tiny_pipeline  # noqa: E402
from pst_core.models.tiny import save_random_model, train_tokenizer  # noqa: E402

QWEN_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936)
QWEN_SMALL = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=32000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--small", action="store_true", help="smaller shapes (for a CPU)")
    parser.add_argument("--vllm", choices=["auto", "off"], default="auto",
                        help="auto: also run the vLLM backend when vllm is importable")
    parser.add_argument("--skip-speed", action="store_true", help="only the pipeline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA GPU (use --device cpu --small)")
        return 1
    figures: dict = {"device": device_name(args.device), "torch": torch.__version__}
    work = Path(tempfile.mkdtemp(prefix="pst-gpu-check-"))
    try:
        tokenizer = train_tokenizer()
        figures["pipeline"] = run_tiny_pipeline(work, args.device, width=64 if args.small else 256)
        if not args.skip_speed:
            figures["speed"] = check_speed(work, tokenizer, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0 if figures["pipeline"]["ok"] else 1


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def matmul_flops(device: str, dtype) -> float:
    """Measured dense matmul FLOP/s (the compute bound these speeds are compared with)."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_speed(work: Path, tokenizer, args) -> dict:
    """Generation and scoring tokens/s of a 1.5B-shaped Qwen2 (random weights) on the device."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from pst_core.models.backend import SamplingParams
    from pst_core.models.hf import TransformersBackend
    from pst_core.models.source import resolve_dtype

    device = args.device
    # fp32 on a CPU: bf16 is emulated on CPUs without AVX-512 bf16 (4x slower), which would make
    # the matmul bound, not the model, the thing measured.
    dtype = resolve_dtype("auto" if device.startswith("cuda") else "float32", device)
    shape = QWEN_SMALL if args.small else QWEN_1_5B
    config = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    peak = matmul_flops(device, dtype)
    batch, new_tokens = (64, 128) if not args.small else (8, 32)
    ctx_len, cont_len = (400, 200) if not args.small else (64, 32)
    backend = TransformersBackend(model, tokenizer, name="qwen-1.5b-shape", batch_size=batch)
    prompts = _texts(tokenizer, batch, 64 if not args.small else 32, seed=1)
    greedy = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    backend.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up
    gen = _timed(device, lambda: backend.generate(prompts, greedy))
    generated = sum(g[0].n_tokens for g in gen["out"])
    contexts = _texts(tokenizer, batch, ctx_len, seed=2)
    continuations = _texts(tokenizer, batch, cont_len, seed=3)
    score = _timed(device, lambda: backend.score(contexts, continuations))
    scored = sum(len(tokenizer(c).input_ids) + len(tokenizer(t, add_special_tokens=False).input_ids)
                 for c, t in zip(contexts, continuations))
    out = {
        "model": f"Qwen2 {'small' if args.small else '1.5B'} shape, {params / 1e9:.2f}B params, "
                 f"{str(dtype).removeprefix('torch.')}",
        "matmul TFLOP/s (measured)": round(peak / 1e12, 2),
        "transformers generate": _rates(generated, gen["s"], params, peak,
                                        f"batch {batch}, {new_tokens} new tokens"),
        "transformers score": _rates(scored, score["s"], params, peak,
                                     f"batch {batch}, {ctx_len}+{cont_len} tokens"),
    }
    backend.close()
    model = backend = None  # free the weights before vLLM loads its own
    if args.vllm == "auto" and _vllm_importable():
        out.update(check_vllm_speed(work, tokenizer, config, prompts, contexts, continuations,
                                    greedy, params, peak, args))
    elif args.vllm == "auto":
        out["vllm"] = "not importable: skipped"
    return out


def check_vllm_speed(work, tokenizer, config, prompts, contexts, continuations, greedy,
                     params, peak, args) -> dict:
    from pst_core.config import PeerConfig
    from pst_core.models.vllm import VLLMBackend

    path = save_random_model(work / "qwen-speed", config, tokenizer)
    peer = PeerConfig(name="qwen-vllm", source=str(path), backend="vllm",
                      dtype="float32" if args.device == "cpu" else "auto",
                      gpu_memory_utilization=0.5)
    start = time.perf_counter()
    backend = VLLMBackend.from_config(peer)
    started = time.perf_counter() - start
    gen = _timed(args.device, lambda: backend.generate(prompts, greedy))
    generated = sum(g[0].n_tokens for g in gen["out"])
    score = _timed(args.device, lambda: backend.score(contexts, continuations))
    scored = sum(len(tokenizer(c).input_ids) + len(tokenizer(t, add_special_tokens=False).input_ids)
                 for c, t in zip(contexts, continuations))
    backend.close()
    return {"vllm engine start s": round(started, 1),
            "vllm generate": _rates(generated, gen["s"], params, peak, "same prompts"),
            "vllm score": _rates(scored, score["s"], params, peak, "prompt_logprobs")}


def _vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _texts(tokenizer, count: int, tokens: int, seed: int) -> list[str]:
    """``count`` texts of about ``tokens`` tokens, from the synthetic problems."""
    from pst_core.data.synthetic import generate_problems

    words = " ".join(p.question for p in generate_problems(200, seed=seed)).split()
    out = []
    for i in range(count):
        text, j = "", i * 7
        while len(tokenizer(text, add_special_tokens=False).input_ids) < tokens:
            text += " " + " ".join(words[j % len(words): j % len(words) + 8])
            j += 8
        ids = tokenizer(text, add_special_tokens=False).input_ids[:tokens]
        out.append(tokenizer.decode(ids))
    return out


def _timed(device: str, fn) -> dict:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return {"out": out, "s": time.perf_counter() - start}


def _rates(tokens: int, seconds: float, params: int, peak: float, what: str) -> dict:
    achieved = 2 * params * tokens / seconds  # forward FLOPs ~ 2 x params per token
    return {"tokens": tokens, "s": round(seconds, 2), "tokens/s": round(tokens / seconds, 1),
            "share of matmul bound": f"{achieved / peak:.1%}", "setup": what}


def print_report(figures: dict) -> None:
    print(f"\ndevice: {figures['device']} (torch {figures['torch']})")
    pipeline = figures["pipeline"]
    print(f"pipeline (2 rounds of PST, 3 tiny peers on {', '.join(pipeline['devices'])}): "
          f"{pipeline['wall_s']} s, {'OK' if pipeline['ok'] else 'FAILED'}")
    for key, value in pipeline.items():
        if isinstance(value, bool) and key != "ok":
            print(f"  {key}: {'yes' if value else 'MISSING'}")
    speed = figures.get("speed")
    if not speed:
        return
    print(f"\nspeed: {speed['model']}; matmul bound {speed['matmul TFLOP/s (measured)']} TFLOP/s")
    print(f"| {'stage':24s} | {'tokens':>7s} | {'s':>7s} | {'tokens/s':>9s} | {'of bound':>8s} | setup")
    print(f"|{'-' * 26}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 10}|------")
    for key, value in speed.items():
        if isinstance(value, dict):
            print(f"| {key:24s} | {value['tokens']:7d} | {value['s']:7.2f} | "
                  f"{value['tokens/s']:9.1f} | {value['share of matmul bound']:>8s} | "
                  f"{value['setup']}")
    for key, value in speed.items():
        if not isinstance(value, dict) and key not in ("model", "matmul TFLOP/s (measured)"):
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
