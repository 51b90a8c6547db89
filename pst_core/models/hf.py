"""The transformers backend: batched generation and fast continuation scoring, CPU or GPU.

Generation runs the decode loop of :mod:`pst_core.models.decode` (one prefill per prompt for its
n samples, finished rows leave the batch), with as many rows as memory holds; on a CPU in fp32
the linear layers run with oneDNN-packed weights (:mod:`pst_core.models.packed`), or in int8
where the peer asks (``quantize: int8``, :mod:`pst_core.models.int8`); bf16 where the device
has bf16 instructions. Scoring computes log-probabilities at the
continuation's positions only (:mod:`pst_core.models.forward`), multiplying hidden states by the
output embedding in chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from pst_core.errors import ModelError
from pst_core.models.backend import (
    ContinuationScore,
    Generation,
    SamplingParams,
    check_context,
    context_length,
    per_prompt,
)
from pst_core.models.decode import Decoded, DecodeStats, decode
from pst_core.models.forward import hidden_at, output_logits, pack_continuations
from pst_core.models.int8 import quantize_linears
from pst_core.models.loading import load_peer_model
from pst_core.models.memory import out_of_memory_as_error, release_memory, rows_that_fit
from pst_core.models.packed import can_pack, pack_linears
from pst_core.models.tokens import (
    encode_continuation,
    encode_prompt,
    eos_ids,
    prompt_style,
    render_prompt,
)
from pst_core.progress import progress
from pst_core.prompts import Prompt, Style

log = logging.getLogger(__name__)

_SCORE_BATCH = 16  # scoring batch under batch_size auto
_LOGIT_CHUNK = 512  # rows of hidden states multiplied by the output embedding at once


class TransformersBackend:
    """A transformers causal LM behind the :class:`~pst_core.models.backend.Backend` interface.

    Args:
        model: a causal LM (a peft-wrapped one works too), in eval mode.
        tokenizer: its tokenizer; padding side and pad token are set here.
        name: a label for logs and tables.
        batch_size: rows (prompts x samples) decoded at once and prompts per scoring batch;
            ``auto``: generation takes the rows its KV cache fits in memory
            (:func:`~pst_core.models.memory.rows_that_fit`), scoring batches of 16.
        linears: what runs the linear layers: ``nn`` (as loaded), ``packed`` (oneDNN-packed
            fp32) or ``int8`` (int8 weights and activations); the last two on a CPU only.
    """

    def __init__(self, model, tokenizer, name: str = "model", batch_size: int | str = "auto",
                 linears: str = "nn"):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.stats = DecodeStats()  # what this backend's generation has cost so far
        if linears == "packed":
            pack_linears(model)
        elif linears == "int8":
            quantize_linears(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)

    @classmethod
    def from_config(cls, peer, checkpoint: Path | None = None) -> TransformersBackend:
        model, tokenizer = load_peer_model(peer, checkpoint)
        device = next(model.parameters()).device
        if peer.quantize == "int8" and device.type != "cpu":
            raise ModelError(f"peers[{peer.name}].quantize: int8 runs on a CPU; this peer loaded "
                             f"on {device} (set quantize: none)")
        linears = "int8" if peer.quantize == "int8" else "packed" if can_pack(model) else "nn"
        return cls(model, tokenizer, name=peer.name, batch_size=peer.batch_size, linears=linears)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_style(self, requested: str) -> Style:
        return prompt_style(self.tokenizer, requested)

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text)

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[list[Generation]]:
        per = per_prompt(params, len(prompts))
        encoded = [self.encode(p) for p in prompts]
        check_context([len(e) for e in encoded], [p.max_new_tokens for p in per],
                      context_length(self.model.config), self.name)
        rows = self.generation_rows(max((len(e) + p.max_new_tokens for e, p in zip(encoded, per)),
                                        default=0))
        checks = {p.stop: self._stop_check(p.stop) for p in per}
        with (self._out_of_memory("generation", " or its max_new_tokens", rows),
              progress(f"{self.name}: generate", len(prompts)) as advance):
            decoded = decode(self.model, encoded, per, eos_ids=eos_ids(self.model, self.tokenizer),
                             pad_id=self.tokenizer.pad_token_id, rows=rows,
                             stopped=[checks[p.stop] for p in per], advance=advance,
                             stats=self.stats)
        return [[self._finish(d, p.stop) for d in samples] for samples, p in zip(decoded, per)]

    def generation_rows(self, row_tokens: int) -> int:
        """Rows decoded at once: the configured batch size, or (``auto``) what memory holds."""
        if self.batch_size != "auto":
            return self.batch_size
        return rows_that_fit(self.model, row_tokens)

    def _stop_check(self, stop: tuple[str, ...]):
        """Whether a row's tokens end in a stop string: its last few tokens, decoded."""
        if not stop:
            return None
        tail = 2 * max(map(len, stop)) + 4  # tokens; a token decodes to one character or more

        def stopped(tokens: list[int]) -> bool:
            text = self.tokenizer.decode(tokens[-tail:], skip_special_tokens=True)
            return any(s in text for s in stop)

        return stopped

    def _finish(self, decoded: Decoded, stop: tuple[str, ...]) -> Generation:
        """A row's text, cut before the first stop string; its token count; why it ended."""
        text = self.tokenizer.decode(decoded.tokens, skip_special_tokens=True)
        cut = [text.find(s) for s in stop if s in text]
        if cut:
            text = text[: min(cut)]
        return Generation(text=text.strip(), n_tokens=len(decoded.tokens),
                          finish_reason="stop" if cut else decoded.finish_reason)

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
            for batch in _length_buckets(lengths, self._score_batch):
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
            for batch in _length_buckets(encoded, self._score_batch):
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

    @property
    def _score_batch(self) -> int:
        return _SCORE_BATCH if self.batch_size == "auto" else self.batch_size

    def _out_of_memory(self, stage: str, hint: str = "", size: int | None = None):
        return out_of_memory_as_error(self.name, stage, f"peers[{self.name}].batch_size",
                                      size or self._score_batch, hint)

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
        release_memory()


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
