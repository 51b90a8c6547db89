"""How far generation is from this machine's limits: the backend's decode loop against the old
path (``model.generate`` in length buckets of 16, ``nn.Linear``), on the evaluation workload,
in one run.

Measures, in the same process: the matmul FLOP/s this machine reaches at the model's dtype and
the memory bandwidth (a 1 GiB sum); then both paths on greedy answers to ``--questions``
MultiArith questions and ``--samples`` sampled answers to the first ``--sample-questions``
(what ``Evaluate`` runs): the old path as two passes, as evaluation used to run them, the new
one as one pass with per-prompt sampling parameters, as ``Evaluate`` does now. Prints per
path: new tokens/s, the share of row-steps spent on rows that had already finished, the time
the compute and bandwidth bounds allow as a share of the measured time, peak RSS; then the
speed-up and whether the greedy outputs are identical.

Bounds: a forward over t tokens costs 2 x params x t FLOPs (the input embedding is a lookup,
not counted) and each forward step reads every weight once; the bound is the larger of the two
times. It ignores attention, so it is a little optimistic for long sequences.

    python bench/bench_generate.py                                  # Qwen-0.5B, offline GGUF
    python bench/bench_generate.py --model smollm2-135m-instruct
    python bench/bench_generate.py --model random:qwen2.5-0.5b      # random weights, real shapes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pst_core.models.backend import SamplingParams
from pst_core.models.decode import DecodeStats, decode
from pst_core.models.memory import rows_that_fit
from pst_core.models.packed import can_pack, pack_linears
from pst_core.peak_memory import peak_gib, reset_peak
from pst_core.provenance import cpu_flags, cpu_name

MULTIARITH = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "multiarith.jsonl"
OLD_BATCH = 16


def machine_peaks(dtype: torch.dtype, hidden: int, intermediate: int) -> tuple[float, float]:
    """(matmul FLOP/s at the model's MLP shape with 1024 rows, memory read bytes/s)."""
    a = torch.randn(1024, hidden, dtype=dtype)
    w = torch.randn(intermediate, hidden, dtype=dtype)
    flops = _best(lambda: a @ w.T, 5, lambda s: 2 * 1024 * hidden * intermediate / s)
    x = torch.randn(2**28)  # 1 GiB of fp32
    bandwidth = _best(lambda: x.sum(), 5, lambda s: x.numel() * 4 / s)
    return flops, bandwidth


def _best(fn, repeats: int, rate) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return rate(best)


def load(name: str, dtype: str):
    """(model, prompts as token ids, eos ids, pad id) for an offline model or random shapes."""
    if name.startswith("random:"):
        model, *rest = _random_model(name.removeprefix("random:"))
        return (model if dtype == "auto" else model.to(getattr(torch, dtype)), *rest)
    from pst_core.models.source import load_model
    from pst_core.models.tokens import encode_prompt, eos_ids, prompt_style, render_prompt
    from pst_core.prompts import solo_prompt

    model, tokenizer = load_model(name, dtype=dtype, device="cpu", device_field="--model")
    style = prompt_style(tokenizer, "auto")
    prompts = [encode_prompt(tokenizer, render_prompt(tokenizer, solo_prompt(q, style)))
               for q in _questions()]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model, prompts, eos_ids(model, tokenizer), pad


def _questions() -> list[str]:
    if MULTIARITH.exists():
        return [json.loads(line)["question"] for line in MULTIARITH.open()]
    from pst_core.data.synthetic import generate_problems

    return [p.question for p in generate_problems(600, seed=0)]


def _random_model(shape: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if shape != "qwen2.5-0.5b":
        raise SystemExit(f"--model random:{shape}: only random:qwen2.5-0.5b is defined")
    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                         num_key_value_heads=2, num_hidden_layers=24, vocab_size=151936,
                         tie_word_embeddings=True, eos_token_id=151645, pad_token_id=151643)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    lengths = torch.randint(60, 120, (600,), generator=torch.Generator().manual_seed(0))
    prompts = [torch.randint(0, 150000, (int(n),)).tolist() for n in lengths]
    return model, prompts, [151645], 151643


def old_generate(model, prompts, params: SamplingParams, eos_ids, pad_id, stats: DecodeStats):
    """The previous backend: length buckets of 16 prompts through ``model.generate``, each
    prompt repeated n times (``num_return_sequences``); rows stay in the batch until the
    longest is done. Returns new tokens per (prompt, sample), cut after the first EOS."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    n = params.n if params.temperature > 0 else 1
    out: list[list[list[int]]] = [[] for _ in prompts]
    for b, start in enumerate(range(0, len(order), OLD_BATCH)):
        batch = order[start : start + OLD_BATCH]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in batch])
        mask = (torch.arange(width)[None] >= width - torch.tensor(
            [len(prompts[i]) for i in batch])[:, None]).long()
        torch.manual_seed(params.seed + b)
        sampling = params.temperature > 0
        with torch.inference_mode():
            rows = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
                do_sample=sampling, temperature=params.temperature if sampling else None,
                top_p=params.top_p if sampling else None, top_k=None, num_return_sequences=n,
                eos_token_id=list(eos_ids), pad_token_id=pad_id,
            )[:, width:].tolist()
        stats.prefill_tokens += int(mask.sum()) * n
        stats.steps += len(rows[0])
        stats.row_steps += len(rows) * len(rows[0])
        for r, tokens in enumerate(rows):
            ends = [k for k, t in enumerate(tokens) if t in eos_ids]
            kept = tokens[: ends[0]] if ends else tokens
            stats.new_tokens += len(kept) + bool(ends)
            out[batch[r // n]].append(kept)
    return out


def cpu_description() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} threads, {cpu_flags()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--questions", type=int, default=40, help="greedy answers")
    parser.add_argument("--sample-questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per question")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--rows", default="auto", help="rows decoded at once by the new path")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="auto: bf16 where the CPU has AVX-512 BF16 or AMX, as the backend")
    args = parser.parse_args()

    model, prompts, eos_ids, pad_id = load(args.model, args.dtype)
    param = next(model.parameters())
    text = model.config.get_text_config()
    matmul_params = sum(p.numel() for p in model.parameters()) - (
        0 if model.config.tie_word_embeddings else model.get_input_embeddings().weight.numel())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    flops, bandwidth = machine_peaks(param.dtype, text.hidden_size, text.intermediate_size)
    longest = max(len(p) for p in prompts[: args.questions]) + args.max_new_tokens
    rows = rows_that_fit(model, longest) if args.rows == "auto" else int(args.rows)
    print(f"machine: {cpu_description()}")
    print(f"peaks: matmul {flops / 1e9:.0f} GFLOP/s ({param.dtype}), memory {bandwidth / 1e9:.1f} GB/s")
    print(f"model: {args.model}, {matmul_params / 1e6:.0f}M matmul params, {weight_bytes / 1e9:.2f} GB "
          f"weights; {args.questions} greedy + {args.sample_questions}x{args.samples} sampled, "
          f"{args.max_new_tokens} new tokens at most; new path: {rows} rows")

    greedy = SamplingParams(max_new_tokens=args.max_new_tokens)
    sampled = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7,
                             n=args.samples, seed=1)
    asked, resampled = prompts[: args.questions], prompts[: args.sample_questions]
    results = {}
    for path in ("old", "new"):
        stats = DecodeStats()
        reset_peak()
        start = time.perf_counter()
        if path == "old":  # greedy and sampled answers as two passes, as evaluation was
            greedy_out = old_generate(model, asked, greedy, eos_ids, pad_id, stats)
            old_generate(model, resampled, sampled, eos_ids, pad_id, stats)
        else:  # one pass with per-prompt parameters, as Evaluate decodes now
            if can_pack(model):
                pack_linears(model)  # what the backend does to a CPU fp32 model
            decoded = decode(model, asked + resampled,
                             [greedy] * len(asked) + [sampled] * len(resampled),
                             eos_ids=eos_ids, pad_id=pad_id, rows=rows, stats=stats)
            greedy_out = [[d.tokens for d in samples] for samples in decoded[: len(asked)]]
        seconds = time.perf_counter() - start
        compute_s = 2 * matmul_params * (stats.prefill_tokens + stats.row_steps) / flops
        bandwidth_s = stats.steps * weight_bytes / bandwidth
        results[path] = (stats, seconds, greedy_out)
        print(f"{path}: {stats.new_tokens / seconds:6.1f} new tokens/s, {seconds:6.1f} s, "
              f"{stats.steps} steps, {stats.wasted_share:4.0%} of row-steps on finished rows, "
              f"bound {max(compute_s, bandwidth_s) / seconds:4.0%} (compute {compute_s / seconds:4.0%}, "
              f"bandwidth {bandwidth_s / seconds:4.0%}), peak RSS {peak_gib():.2f} GiB")
    (old_stats, old_s, old_out), (new_stats, new_s, new_out) = results["old"], results["new"]
    same = sum(a == b for a, b in zip(old_out, new_out))
    print(f"speed-up: {(new_stats.new_tokens / new_s) / (old_stats.new_tokens / old_s):.2f}x "
          f"new tokens/s; greedy outputs identical: {same}/{len(old_out)}")


if __name__ == "__main__":
    main()
