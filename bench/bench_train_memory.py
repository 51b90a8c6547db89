"""Peak memory and wall time of a LoRA training round, two ways in one run: with glibc's default
heap and with large blocks unmapped on free (``pst_core.models.memory.unmapped_large_blocks``,
what training now runs in), or (``--compare trainer``) by the loop (``pst_core.train``) and by
the Hugging Face Trainer (``pst_core.trainer``), both on the unmapped heap.

Each variant runs in its own process (glibc's own threshold, once fixed, cannot come back; the
Trainer's imports stay out of the loop's): load the model, add LoRA adapters, train one epoch on
``--examples`` examples of ``--prompt-tokens`` + ``--target-tokens`` random token ids (real
lengths of a CoT target; the values do not change the memory or the FLOPs). Prints per variant:
RSS after the load, the training's peak RSS, its peak above the loaded model, RSS after
training, wall time; then the ratios.

    python bench/bench_train_memory.py                               # random weights, Qwen-0.5B
    python bench/bench_train_memory.py --model qwen2.5-coder-0.5b-instruct   # offline GGUF
    python bench/bench_train_memory.py --compare trainer             # loop vs Trainer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time

import torch

from pst_core.provenance import cpu_flags, cpu_name

COMPARISONS = {"heap": ("default", "unmap"), "trainer": ("loop", "trainer")}


def measure(args) -> dict:
    """One variant, in this process: the figures as a dict (GiB, seconds)."""
    import pst_core.train
    from pst_core.config import TrainConfig
    from pst_core.models.source import load_model
    from pst_core.peak_memory import peak_gib, reset_peak, rss_gib
    from pst_core.train import add_adapters, train_pairs

    if args.variant == "default":
        pst_core.train.unmapped_large_blocks = contextlib.nullcontext  # glibc's own threshold
    if args.variant == "trainer":
        from pst_core.trainer import train_pairs_with_trainer as train_pairs
    if args.model.startswith("random:"):
        from bench_generate import _random_model

        model = _random_model(args.model.removeprefix("random:"))[0]
    else:
        model = load_model(args.model, dtype=args.dtype, device="cpu")[0]
    model = model.to(getattr(torch, args.dtype))
    loaded = rss_gib()
    cfg = TrainConfig(batch_size=args.batch_size, gradient_accumulation_steps=args.accumulation,
                      num_epochs=1, max_length=args.prompt_tokens + args.target_tokens + 1,
                      gradient_checkpointing=args.checkpointing)
    model = add_adapters(model, cfg, None, seed=0)
    ids = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    pairs = [(torch.randint(0, vocab, (args.prompt_tokens,), generator=ids).tolist(),
              torch.randint(0, vocab, (args.target_tokens,), generator=ids).tolist())
             for _ in range(args.examples)]
    reset_peak()
    start = time.perf_counter()
    train_pairs(model, 0, pairs, [1.0] * len(pairs), cfg, peer="bench", seed=0)
    wall = time.perf_counter() - start
    return {"loaded": loaded, "peak": peak_gib(), "after": rss_gib(), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:qwen2.5-0.5b")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--target-tokens", type=int, default=550)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compare", choices=COMPARISONS, default="heap",
                        help="heap: glibc's default heap vs large blocks unmapped; trainer: "
                        "the loop vs the Hugging Face Trainer")
    parser.add_argument("--variant", choices=[v for vs in COMPARISONS.values() for v in vs],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args)))
        return

    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, {cpu_flags()}")
    print(f"model: {args.model} ({args.dtype}); {args.examples} examples of "
          f"{args.prompt_tokens} + {args.target_tokens} tokens, micro-batches of "
          f"{args.batch_size} x {args.accumulation}, checkpointing "
          f"{'on' if args.checkpointing else 'off'}")
    results = {}
    for variant in COMPARISONS[args.compare]:
        out = subprocess.run([sys.executable, *sys.argv, "--variant", variant],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"{variant}: failed:\n{out.stderr[-2000:]}")
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.compare:<8} {'loaded GiB':>10} {'train peak':>10} {'above load':>10} "
          f"{'after':>7} {'wall s':>7}")
    for variant, r in results.items():
        print(f"{variant:<8} {r['loaded']:>10.2f} {r['peak']:>10.2f} "
              f"{r['peak'] - r['loaded']:>10.2f} {r['after']:>7.2f} {r['wall']:>7.1f}")
    base, other = COMPARISONS[args.compare]
    d, u = results[base], results[other]
    print(f"{other} / {base}: peak {u['peak'] / d['peak']:.2f}x, above load "
          f"{(u['peak'] - u['loaded']) / (d['peak'] - d['loaded']):.2f}x, "
          f"wall {u['wall'] / d['wall']:.2f}x")


if __name__ == "__main__":
    main()
