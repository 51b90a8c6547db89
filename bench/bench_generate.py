"""How far generation is from this machine's limits: the backend's decode loop with each way of
running the linear layers, on the evaluation workload, in one run.

Measures, in the same process: the matmul FLOP/s this machine reaches at the model's MLP shape
(fp32 and int8) and the memory bandwidth (a 1 GiB sum); then each path on greedy answers to
``--questions`` MultiArith questions and ``--samples`` sampled answers to the first
``--sample-questions`` (what ``Evaluate`` runs, in one pass with per-prompt sampling
parameters). Paths (``--paths``):

- ``fp32``: oneDNN-packed fp32 weights, what a CPU fp32 peer runs (the baseline);
- ``int8``: every linear layer in int8 (``quantize: int8``);
- ``int8-body``: int8 except the output embedding, which stays packed fp32 (its logits decide
  greedy's argmax);
- ``old``: ``model.generate`` in length buckets of 16 with ``nn.Linear``, the path before the
  decode loop.

Prints per path: new tokens/s, the share of row-steps spent on rows that had already finished,
the time the compute and bandwidth bounds allow as a share of the measured time, peak RSS,
greedy exact match against MultiArith's gold answers, and how many greedy outputs are
identical to the first path's.

Bounds: a forward over t tokens costs 2 x params x t FLOPs (the input embedding is a lookup,
not counted) at the path's matmul peak, and each forward step reads every weight once (1 byte
a weight in int8); the bound is the larger of the two times. It ignores attention, so it is a
little optimistic for long sequences.

    python bench/bench_generate.py                                  # Qwen-0.5B, offline GGUF
    python bench/bench_generate.py --questions 200 --sample-questions 0   # EM on 200 questions
    python bench/bench_generate.py --model smollm2-135m-instruct
    python bench/bench_generate.py --model random:qwen2.5-0.5b      # random weights, real shapes
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from pst_core.answers import extract_answer, matches_gold
from pst_core.models.backend import SamplingParams
from pst_core.models.decode import DecodeStats, decode
from pst_core.models.int8 import Int8Linear, quantize_linears
from pst_core.models.memory import rows_that_fit
from pst_core.models.packed import PackedLinear, can_pack, pack_linears
from pst_core.peak_memory import peak_gib, reset_peak
from pst_core.provenance import cpu_flags, cpu_name

MULTIARITH = Path(__file__).resolve().parents[1] / "data" / "benchmarks" / "multiarith.jsonl"
OLD_BATCH = 16


def machine_peaks(hidden: int, intermediate: int) -> dict[str, float]:
    """Matmul FLOP/s at the model's MLP shape with 1024 rows, per way of running a linear layer
    (``fp32``: plain ``a @ w.T``, the larger of it and the packed layer), and the memory read
    bytes/s (``bandwidth``)."""
    a = torch.randn(1024, hidden)
    linear = torch.nn.Linear(hidden, intermediate, bias=False)
    rate = lambda s: 2 * 1024 * hidden * intermediate / s
    with torch.inference_mode():
        packed, int8 = PackedLinear(linear), Int8Linear(linear)
        peaks = {"fp32": max(_best(lambda: a @ linear.weight.T, 5, rate),
                             _best(lambda: packed(a), 5, rate)),
                 "int8": _best(lambda: int8(a), 5, rate)}
    x = torch.randn(2**28)  # 1 GiB of fp32
    peaks["bandwidth"] = _best(lambda: x.sum(), 5, lambda s: x.numel() * 4 / s)
    return peaks


def _best(fn, repeats: int, rate) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return rate(best)


def load(name: str, dtype: str):
    """(model, prompts as token ids, eos ids, pad id, decode) for an offline model or random
    shapes; ``decode`` turns new tokens into text (None for random weights)."""
    if name.startswith("random:"):
        model, *rest = _random_model(name.removeprefix("random:"))
        return (model if dtype == "auto" else model.to(getattr(torch, dtype)), *rest, None)
    from pst_core.models.source import load_model
    from pst_core.models.tokens import encode_prompt, eos_ids, prompt_style, render_prompt
    from pst_core.prompts import solo_prompt

    model, tokenizer = load_model(name, dtype=dtype, device="cpu", device_field="--model")
    style = prompt_style(tokenizer, "auto")
    prompts = [encode_prompt(tokenizer, render_prompt(tokenizer, solo_prompt(q, style)))
               for q in _questions()]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    text = lambda tokens: tokenizer.decode(tokens, skip_special_tokens=True)
    return model, prompts, eos_ids(model, tokenizer), pad, text


def _problems() -> list[dict]:
    """MultiArith's questions and gold answers (the synthetic problems without the file)."""
    if MULTIARITH.exists():
        return [json.loads(line) for line in MULTIARITH.open()]
    from pst_core.data.synthetic import generate_problems

    return [{"question": p.question, "answer": p.answer} for p in generate_problems(600, seed=0)]


def _questions() -> list[str]:
    return [p["question"] for p in _problems()]


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


PATHS = ("fp32", "int8", "int8-body", "old")


def prepare(model, path: str):
    """A copy of ``model`` with its linear layers as ``path`` runs them."""
    model = copy.deepcopy(model)
    if path == "int8":
        quantize_linears(model)
    elif path == "int8-body":
        head = model.get_output_embeddings()
        quantize_linears(model)
        model.set_output_embeddings(PackedLinear(head) if can_pack(model) else head)
    elif path == "fp32" and can_pack(model):
        pack_linears(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--questions", type=int, default=40, help="greedy answers")
    parser.add_argument("--sample-questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per question")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--rows", default="auto", help="rows decoded at once by the decode loop")
    parser.add_argument("--paths", default="fp32,int8,int8-body",
                        help=f"comma-separated, the first is the reference: {', '.join(PATHS)}")
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"],
                        help="the loaded model's dtype (int8 paths quantize from it)")
    args = parser.parse_args()
    paths = args.paths.split(",")
    if unknown := set(paths) - set(PATHS):
        raise SystemExit(f"--paths: unknown {sorted(unknown)}; choose from {', '.join(PATHS)}")

    model, prompts, eos_ids, pad_id, text = load(args.model, args.dtype)
    param = next(model.parameters())
    config = model.config.get_text_config()
    output_params = model.get_output_embeddings().weight.numel()
    matmul_params = sum(p.numel() for p in model.parameters()) - (
        0 if model.config.tie_word_embeddings else model.get_input_embeddings().weight.numel())
    peaks = machine_peaks(config.hidden_size, config.intermediate_size)
    longest = max(len(p) for p in prompts[: args.questions]) + args.max_new_tokens
    rows = rows_that_fit(model, longest) if args.rows == "auto" else int(args.rows)
    print(f"machine: {cpu_description()}")
    print(f"peaks: matmul {peaks['fp32'] / 1e9:.0f} GFLOP/s fp32, {peaks['int8'] / 1e9:.0f} int8 "
          f"({param.dtype} model), memory {peaks['bandwidth'] / 1e9:.1f} GB/s")
    print(f"model: {args.model}, {matmul_params / 1e6:.0f}M matmul params; {args.questions} greedy "
          f"+ {args.sample_questions}x{args.samples} sampled, {args.max_new_tokens} new tokens at "
          f"most; decode loop: {rows} rows")

    greedy = SamplingParams(max_new_tokens=args.max_new_tokens)
    sampled = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7,
                             n=args.samples, seed=1)
    asked, resampled = prompts[: args.questions], prompts[: args.sample_questions]
    gold = [p["answer"] for p in _problems()[: args.questions]]
    results = {}
    for path in paths:
        stats = DecodeStats()
        runner = prepare(model, path) if path != "old" else model
        reset_peak()
        start = time.perf_counter()
        if path == "old":  # greedy and sampled answers as two passes, as evaluation was
            greedy_out = old_generate(runner, asked, greedy, eos_ids, pad_id, stats)
            old_generate(runner, resampled, sampled, eos_ids, pad_id, stats)
        else:  # one pass with per-prompt parameters, as Evaluate decodes
            decoded = decode(runner, asked + resampled,
                             [greedy] * len(asked) + [sampled] * len(resampled),
                             eos_ids=eos_ids, pad_id=pad_id, rows=rows, stats=stats)
            greedy_out = [[d.tokens for d in samples] for samples in decoded[: len(asked)]]
        seconds = time.perf_counter() - start
        del runner
        int8_params = {"int8": matmul_params, "int8-body": matmul_params - output_params}.get(path, 0)
        flop_s = 2 * (stats.prefill_tokens + stats.row_steps)
        compute_s = flop_s * (int8_params / peaks["int8"] + (matmul_params - int8_params) / peaks["fp32"])
        weight_bytes = int8_params + (matmul_params - int8_params) * param.element_size()
        bandwidth_s = stats.steps * weight_bytes / peaks["bandwidth"]
        em = (f"EM {sum(matches_gold(extract_answer(text(o[0])).answer, g) for o, g in zip(greedy_out, gold)) / len(gold):.1%}"
              if text is not None else "EM n/a (random weights)")
        results[path] = (stats, seconds, greedy_out)
        first_stats, first_s, first_out = results[paths[0]]
        same = sum(a == b for a, b in zip(first_out, greedy_out))
        print(f"{path:9s}: {stats.new_tokens / seconds:6.1f} new tokens/s "
              f"({(stats.new_tokens / seconds) / (first_stats.new_tokens / first_s):.2f}x {paths[0]}), "
              f"{seconds:6.1f} s, {stats.steps} steps, {stats.wasted_share:3.0%} of row-steps on "
              f"finished rows, bound {max(compute_s, bandwidth_s) / seconds:4.0%} (compute "
              f"{compute_s / seconds:4.0%}, bandwidth {bandwidth_s / seconds:4.0%}), peak RSS "
              f"{peak_gib():.2f} GiB; {em}; greedy identical to {paths[0]}: {same}/{len(greedy_out)}",
              flush=True)


if __name__ == "__main__":
    main()
