"""The decode loop of the transformers backend: cohorts of rows, one prefill per prompt, and no
compute spent on finished rows.

``model.generate`` with ``num_return_sequences=n`` prefills every prompt n times, and it keeps
feeding rows that have finished (EOS or a stop string) until the longest row of the batch is
done: measured on Qwen-0.5B, 23% of all row-steps went to finished rows. Here a cohort of
prompts is left-padded and prefilled once; its KV cache is repeated for the n samples; after
every step the rows that finished are dropped from the batch and from the cache, so each step
costs what the live rows need. Decoding is explicit and does not read the model's
``generation_config``: greedy is the argmax; sampling is temperature then nucleus (top-p).

Prompts are processed longest first (the largest cache comes first: an out-of-memory error
shows at once) in cohorts of at most ``rows`` rows (prompts x samples).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from pst_core.models.backend import SamplingParams

_PREFILL_TOKENS = 8192  # prompt tokens per prefill forward: bounds the activations' peak


@dataclass
class DecodeStats:
    """What a decode cost: prompt tokens prefilled, forward steps, row-steps, tokens produced.

    A row-step is one row of one forward step; a row produces one token per row-step, so
    ``1 - new_tokens / row_steps`` is the share of compute spent on rows already finished.
    """

    prefill_tokens: int = 0
    steps: int = 0
    row_steps: int = 0
    new_tokens: int = 0  # tokens produced, the one that ended a row (EOS) included

    @property
    def wasted_share(self) -> float:
        return 1 - self.new_tokens / self.row_steps if self.row_steps else 0.0


@dataclass
class Decoded:
    """One row's result: its new tokens (EOS excluded) and why it ended."""

    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"


@torch.inference_mode()
def decode(
    model,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    eos_ids: Sequence[int],
    pad_id: int,
    rows: int,
    stopped: Callable[[list[int]], bool] | None = None,
    advance: Callable[[int], None] = lambda n: None,
    stats: DecodeStats | None = None,
) -> list[list[Decoded]]:
    """``params.n`` decodings of each prompt (token ids), in input order.

    Args:
        model: a causal LM in eval mode.
        prompts: token ids of each prompt.
        params: how to decode; greedy (temperature 0) decodes once and copies the result n times.
        eos_ids: tokens that end a row (not included in its tokens).
        pad_id: the token fed for padding positions (masked out).
        rows: the most rows (prompts x samples) decoded at once.
        stopped: whether a row's tokens so far end in a stop string (ends it as ``stop``).
        advance: called with the number of prompts finished, for progress bars.
        stats: accumulates what the decode cost (the benchmark reads it).
    """
    stats = stats if stats is not None else DecodeStats()
    per_prompt = params.n if params.temperature > 0 else 1
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    cohort_prompts = max(1, rows // per_prompt)
    out: list[list[Decoded]] = [[] for _ in prompts]
    for c, start in enumerate(range(0, len(order), cohort_prompts)):
        cohort = order[start : start + cohort_prompts]
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(_device(model)).manual_seed(params.seed + c)
        decoded = _decode_cohort(model, [prompts[i] for i in cohort], params, per_prompt,
                                 eos_ids, pad_id, stopped, generator, stats)
        for j, i in enumerate(cohort):
            out[i] = decoded[j * per_prompt : (j + 1) * per_prompt] * (params.n // per_prompt)
        advance(len(cohort))
    return out


def _decode_cohort(model, prompts, params, per_prompt, eos_ids, pad_id, stopped, generator,
                   stats: DecodeStats) -> list[Decoded]:
    device = _device(model)
    cache, logits, mask = _prefill(model, prompts, pad_id, device, stats)
    if per_prompt > 1:
        cache.batch_repeat_interleave(per_prompt)
        logits = logits.repeat_interleave(per_prompt, 0)
        mask = mask.repeat_interleave(per_prompt, 0)
    results = [Decoded() for _ in range(len(logits))]
    live = list(range(len(results)))  # the result each batch row writes to
    position = mask.sum(-1, keepdim=True)  # the next token's position in each row
    eos = torch.tensor(list(eos_ids), device=device)
    stats.row_steps += len(live)  # the prefill's last position produced each row's first token
    for step in range(params.max_new_tokens):
        tokens = _next_tokens(logits, params, generator)
        stats.new_tokens += len(live)
        keep = []
        for row, (token, ended) in enumerate(zip(tokens.tolist(), torch.isin(tokens, eos).tolist())):
            result = results[live[row]]
            if not ended:
                result.tokens.append(token)
            if ended or (stopped is not None and stopped(result.tokens)):
                result.finish_reason = "stop"
            else:
                keep.append(row)
        if not keep or step == params.max_new_tokens - 1:
            break
        if len(keep) < len(live):  # finished rows leave the batch and the cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            tokens, mask, position = tokens[index], mask[index], position[index]
            live = [live[row] for row in keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=-1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position,
                       past_key_values=cache, use_cache=True).logits[:, -1]
        position = position + 1
        stats.steps += 1
        stats.row_steps += len(live)
    return results


def _prefill(model, prompts, pad_id: int, device, stats: DecodeStats):
    """Left-padded prompts through the model in chunks of about ``_PREFILL_TOKENS`` tokens.

    Every chunk is padded to the cohort's width, so the chunks' caches line up and are joined
    along the batch. Returns the cache, the last position's logits, and the attention mask.
    """
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    chunk = max(1, _PREFILL_TOKENS // width)
    caches, logits = [], []
    for s in range(0, len(prompts), chunk):
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids[s : s + chunk], attention_mask=mask[s : s + chunk],
                    position_ids=positions[s : s + chunk], past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        caches.append(cache)
        logits.append(out.logits[:, -1])
    stats.prefill_tokens += int(mask.sum())
    return _join(caches), torch.cat(logits), mask


def _join(caches: list[DynamicCache]) -> DynamicCache:
    """One cache holding the rows of ``caches`` (equal lengths), in order."""
    first = caches[0]
    if len(caches) > 1:
        for i, layer in enumerate(first.layers):
            layer.keys = torch.cat([c.layers[i].keys for c in caches])
            layer.values = torch.cat([c.layers[i].values for c in caches])
    return first


def _next_tokens(logits: torch.Tensor, params: SamplingParams,
                 generator: torch.Generator | None) -> torch.Tensor:
    """Argmax (greedy), or a sample from the temperature-scaled, top-p-truncated distribution."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = (logits.float() / params.temperature).softmax(-1)
    if params.top_p < 1:
        sorted_probs, sorted_ids = probs.sort(-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p  # keep the first token
        sorted_probs = sorted_probs.masked_fill(outside, 0)
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _device(model) -> torch.device:
    return next(model.parameters()).device
