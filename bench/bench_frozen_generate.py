"""Generation with a frozen output embedding (a merged LoRA model), with and without the
backend's contiguous-input hook: time and peak memory, one run (pytorch#88658).

The model is built from a Qwen2 config with random weights and Qwen2.5-0.5B's width and
vocabulary (speed does not depend on the weights; fewer layers keep the run short), frozen as
peft leaves a merged model. Prints both timings, their ratio, the peak RSS after each, and
whether the generated tokens are identical.

    python bench/bench_frozen_generate.py                       # CPU, batch 8
    python bench/bench_frozen_generate.py --batch 32 --layers 24
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from pst_core.models.hf import _contiguous_input


def generate(model, ids, new_tokens: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return time.perf_counter() - start, out


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                         num_key_value_heads=2, num_hidden_layers=args.layers,
                         vocab_size=151936, tie_word_embeddings=False)
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: no fp32 copy inflates the peak
    model = Qwen2ForCausalLM(config).eval().requires_grad_(False)
    torch.set_default_dtype(torch.float32)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.prompt))
    print(f"batch {args.batch}, {args.layers} layers, prompt {args.prompt}, "
          f"{args.new_tokens} new tokens, bf16, frozen weights, {torch.get_num_threads()} threads")
    hook = model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
    generate(model, ids, 2)  # warm-up, with the hook: the plain path must not set the peak
    fixed_s, fixed = generate(model, ids, args.new_tokens)
    fixed_peak = peak_gib()
    hook.remove()
    plain_s, plain = generate(model, ids, args.new_tokens)
    print(f"contiguous input (backend): {fixed_s:.2f} s, peak RSS {fixed_peak:.2f} GiB")
    print(f"strided input (plain):      {plain_s:.2f} s, peak RSS {peak_gib():.2f} GiB")
    print(f"ratio: {plain_s / fixed_s:.1f}x; identical tokens: {torch.equal(fixed, plain)}")


if __name__ == "__main__":
    main()
