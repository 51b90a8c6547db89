"""The transformers backend: batched generation and fast continuation scoring, CPU or GPU.

Generation sorts prompts by length and batches neighbours (little padding), pads on the left,
and runs bf16 where the device supports it. Scoring computes log-probabilities at the
continuation's positions only (:mod:`pst_core.models.forward`), multiplying hidden states by the
output embedding in chunks.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from pst_core.models.backend import ContinuationScore, Generation, SamplingParams
from pst_core.models.forward import hidden_at, output_logits, pack_continuations
from pst_core.models.loading import load_peer_model
from pst_core.models.memory import out_of_memory_as_error
from pst_core.models.tokens import (
    encode_continuation,
    encode_prompt,
    prompt_style,
    render_prompt,
)
from pst_core.progress import progress
from pst_core.prompts import Prompt, Style

log = logging.getLogger(__name__)

_LOGIT_CHUNK = 512  # rows of hidden states multiplied by the output embedding at once


class TransformersBackend:
    """A transformers causal LM behind the :class:`~pst_core.models.backend.Backend` interface.

    Args:
        model: a causal LM (a peft-wrapped one works too), in eval mode.
        tokenizer: its tokenizer; padding side and pad token are set here.
        name: a label for logs and tables.
        batch_size: prompts per forward batch.
    """

    def __init__(self, model, tokenizer, name: str = "model", batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)

    @classmethod
    def from_config(cls, peer, checkpoint: Path | None = None) -> TransformersBackend:
        model, tokenizer = load_peer_model(peer, checkpoint)
        return cls(model, tokenizer, name=peer.name, batch_size=peer.batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_style(self, requested: str) -> Style:
        return prompt_style(self.tokenizer, requested)

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Generation]]:
        encoded = [self.encode(p) for p in prompts]
        results: list[list[Generation]] = [[] for _ in prompts]
        eos_ids = self._eos_ids()
        with (self._out_of_memory("generation", " or its max_new_tokens"),
              progress(f"{self.name}: generate", len(prompts)) as advance):
            for batch_index, batch in enumerate(_length_buckets(encoded, self.batch_size)):
                self._generate_batch(batch_index, batch, encoded, params, eos_ids, results)
                advance(len(batch))
        return results

    def _generate_batch(
        self, batch_index: int, batch: list[int], encoded: list[list[int]],
        params: SamplingParams, eos_ids: list[int], results: list[list[Generation]],
    ) -> None:
        """Generate one length bucket and append each prompt's generations to ``results``."""
        input_ids, attention_mask = self._left_pad([encoded[i] for i in batch])
        torch.manual_seed(params.seed + batch_index)
        sampling = params.temperature > 0
        per_prompt = params.n if sampling else 1  # greedy: one decode, copied n times
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=params.max_new_tokens,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=None,
            num_return_sequences=per_prompt,
            eos_token_id=eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer if params.stop else None,
        )
        new_tokens = out[:, input_ids.shape[1] :].tolist()
        for row, tokens in enumerate(new_tokens):
            generation = self._finish(tokens, eos_ids, params.stop)
            results[batch[row // per_prompt]] += [generation] * (params.n // per_prompt)

    def _finish(self, tokens: list[int], eos_ids: list[int], stop: tuple[str, ...]) -> Generation:
        """Cut a generated row at EOS or a stop string; count its tokens; say why it ended.

        A row that finished before others in its batch is filled with the pad token (a stop
        string ends a row without EOS), so padding ends a row too.
        """
        n_tokens, reason = len(tokens), "length"
        ends = {*eos_ids, self.tokenizer.pad_token_id}
        for i, token in enumerate(tokens):
            if token in ends:
                n_tokens, reason = i, "stop"
                break
        text = self.tokenizer.decode(tokens[:n_tokens], skip_special_tokens=True)
        cut = [text.find(s) for s in stop if s in text]
        if cut:
            text, reason = text[: min(cut)], "stop"
        return Generation(text=text.strip(), n_tokens=n_tokens, finish_reason=reason)

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = [[pad] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        return (torch.tensor(ids, device=self.device), torch.tensor(mask, device=self.device))

    @torch.inference_mode()
    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[ContinuationScore]:
        """log p(continuation | context) per pair, from logits at the continuation positions only.

        The context is encoded like a prompt (BOS unless present); the continuation without
        special tokens; the two id lists are concatenated, so the continuation's tokens are the
        same whatever the context.
        """
        pairs = [
            (self.encode(c), encode_continuation(self.tokenizer, t))
            for c, t in zip(contexts, continuations, strict=True)
        ]
        scores: list[ContinuationScore | None] = [None] * len(pairs)
        lengths = [ctx + cont for ctx, cont in pairs]
        with (self._out_of_memory("scoring"),
              progress(f"{self.name}: score", len(pairs)) as advance):
            for batch in _length_buckets(lengths, self.batch_size):
                logprobs = self._continuation_logprobs([pairs[i] for i in batch])
                for i, token_logprobs in zip(batch, logprobs):
                    scores[i] = ContinuationScore(float(token_logprobs.sum()), len(token_logprobs))
                advance(len(batch))
        return scores  # type: ignore[return-value]

    @torch.inference_mode()
    def choice_logprobs(self, contexts: Sequence[str], choices: Sequence[str]) -> list[list[float]]:
        choice_ids = torch.tensor([encode_continuation(self.tokenizer, c)[0] for c in choices],
                                  device=self.device)
        # An empty continuation's "prediction position" is the context's last token.
        encoded = [self.encode(c) for c in contexts]
        out: list[list[float] | None] = [None] * len(contexts)
        with (self._out_of_memory("verification"),
              progress(f"{self.name}: verify", len(contexts)) as advance):
            for batch in _length_buckets(encoded, self.batch_size):
                pairs = [(encoded[i][:-1], encoded[i][-1:]) for i in batch]
                ids, mask, rows, positions, _ = pack_continuations(
                    pairs, self.tokenizer.pad_token_id, self.device
                )
                causal_lm, hidden = hidden_at(self.model, ids, mask, rows, positions + 1)
                logprobs = output_logits(causal_lm, hidden).log_softmax(-1)[:, choice_ids]
                for i, row in zip(batch, logprobs.tolist()):
                    out[i] = row
                advance(len(batch))
        return out  # type: ignore[return-value]

    def _out_of_memory(self, stage: str, hint: str = ""):
        return out_of_memory_as_error(self.name, stage, f"peers[{self.name}].batch_size",
                                      self.batch_size, hint)

    def _continuation_logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> list[torch.Tensor]:
        input_ids, attention_mask, rows, positions, targets = pack_continuations(
            pairs, self.tokenizer.pad_token_id, self.device
        )
        causal_lm, hidden = hidden_at(self.model, input_ids, attention_mask, rows, positions)
        token_logprobs = torch.cat([
            output_logits(causal_lm, hidden[s : s + _LOGIT_CHUNK])
            .log_softmax(-1).gather(-1, targets[s : s + _LOGIT_CHUNK, None]).squeeze(-1)
            for s in range(0, len(targets), _LOGIT_CHUNK)
        ] or [torch.zeros(0)])
        return list(torch.split(token_logprobs.cpu(), [len(cont) for _, cont in pairs]))

    def close(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _contiguous_input(module, args):
    """Hand the output embedding a contiguous input.

    Generation's first step feeds it the last position, ``hidden[:, -1:, :]``, a strided view.
    For a weight that does not require grad (a merged LoRA model: peft froze it), torch's
    matmul then does not fold the batch into one matrix product but broadcasts the weight per
    row and copies it (pytorch#88658): batch x vocab x hidden x 2 bytes, 8.7 GB and about 17 s
    per batch of 32 for Qwen-0.5B on the CPU, and at 128 rows a failed 35 GB allocation and a
    fallback product. The contiguous input takes the plain matrix product: the same logits bit
    for bit as the copy (measured; greedy evaluations were identical), while the fallback's
    rounding differed (some sampled answers changed).
    """
    return (args[0].contiguous(), *args[1:])


def _length_buckets(sequences: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``sequences`` in batches of similar length (longest first: fail fast on OOM)."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
