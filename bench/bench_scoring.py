"""Fast continuation scoring vs full-vocabulary logits: time and peak memory, one run.

The model is built from a config with random weights (speed does not depend on the weights), with
a large vocabulary like Gemma-3's (262k) where the difference matters most. Prints both timings,
the speed-up, both peak memories and their ratio, and the max per-token difference.

    python bench/bench_scoring.py                      # CPU, small model
    python bench/bench_scoring.py --device cuda --hidden 1024 --layers 16 --batch 32
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from pst_core.models.forward import hidden_at, output_logits, pack_continuations


def naive(model, ids, mask, rows, positions, targets):
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    return logits.log_softmax(-1)[rows, positions].gather(-1, targets[:, None]).squeeze(-1)


def fast(model, ids, mask, rows, positions, targets):
    causal_lm, hidden = hidden_at(model, ids, mask, rows, positions)
    out = [output_logits(causal_lm, hidden[s : s + 512]).log_softmax(-1)
           .gather(-1, targets[s : s + 512, None]).squeeze(-1) for s in range(0, len(targets), 512)]
    return torch.cat(out)


def measure(fn, device, *args):
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn(*args)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out, time.perf_counter() - start, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=160)
    parser.add_argument("--target", type=int, default=60)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs after one warm-up; min time.")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                         intermediate_size=4 * args.hidden, num_attention_heads=8,
                         num_key_value_heads=8)
    model = LlamaForCausalLM(config).to(args.device, getattr(torch, args.dtype)).eval()
    pairs = [(torch.randint(0, args.vocab, (args.context,)).tolist(),
              torch.randint(0, args.vocab, (args.target,)).tolist()) for _ in range(args.batch)]
    inputs = pack_continuations(pairs, 0, args.device)
    runs = {}
    for fn in (fast, naive):  # fast first: on CPU the RSS peak only grows
        results = [measure(fn, args.device, model, *inputs) for _ in range(args.repeat + 1)][1:]
        runs[fn.__name__] = (results[0][0], min(r[1] for r in results), max(r[2] for r in results))
    (a, t_fast, m_fast), (b, t_naive, m_naive) = runs["fast"], runs["naive"]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device={name} dtype={args.dtype} vocab={args.vocab} batch={args.batch} "
          f"tokens={args.context}+{args.target}")
    print(f"fast:  {t_fast:.3f} s (best of {args.repeat})  peak {m_fast:.0f} MiB")
    print(f"naive: {t_naive:.3f} s (best of {args.repeat})  peak {m_naive:.0f} MiB")
    print(f"speed-up {t_naive / t_fast:.2f}x  memory ratio {m_naive / max(m_fast, 1e-9):.2f}x  "
          f"max |diff| per token {(a - b).abs().max().item():.2e}")
    if args.device == "cpu":
        print("(CPU peak is the process's max RSS: run fast first, so the naive figure includes it)")


if __name__ == "__main__":
    main()
