"""The two-method interface every inference backend implements: generate and score.

Stages receive a backend as an argument and never touch model internals, so the same stage runs
on transformers (CPU or GPU) or vLLM (GPU). :func:`pst_core.models.loading.load_backend` builds
the one a peer's config asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pst_core.errors import ModelError
from pst_core.prompts import Prompt, Style


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature == 0`` is greedy; ``stop`` strings end a response early."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()


def per_prompt(params: SamplingParams | Sequence[SamplingParams], n: int) -> list[SamplingParams]:
    """One ``SamplingParams`` per prompt, from one for all or one each."""
    if isinstance(params, SamplingParams):
        return [params] * n
    if len(params) != n:
        raise ValueError(f"{len(params)} sampling params for {n} prompts")
    return list(params)


@dataclass(frozen=True)
class Generation:
    """One response: its text, the tokens it cost, and why it ended (``stop`` or ``length``)."""

    text: str
    n_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class ContinuationScore:
    """log p(continuation | context), summed over the continuation's ``n_tokens`` tokens."""

    logprob_sum: float
    n_tokens: int

    @property
    def logprob_mean(self) -> float:
        return self.logprob_sum / max(self.n_tokens, 1)


class Backend(Protocol):
    """A loaded model that can answer prompts and score continuations, in batches."""

    name: str

    def prompt_style(self, requested: str) -> Style:
        """Resolve ``auto`` to ``chat`` (the model has a chat template) or ``fewshot``."""
        ...

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model (chat template applied for chat prompts)."""
        ...

    def generate(self, prompts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[list[Generation]]:
        """``n`` responses for each rendered prompt, in input order; ``params`` is one for all
        prompts or one per prompt (greedy and sampled answers decoded together)."""
        ...

    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[ContinuationScore]:
        """Log-probability of each continuation given its context, in input order."""
        ...

    def choice_logprobs(self, contexts: Sequence[str], choices: Sequence[str]) -> list[list[float]]:
        """For each context, the log-probability of each choice's first token as the next token.

        One forward pass per context however many choices (self-verification's Yes/No).
        """
        ...

    def close(self) -> None:
        """Release the model's memory."""
        ...


class PromptTooLong(ModelError):
    """A prompt and its token budget exceed the model's context; ``index`` is the prompt's."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def context_length(config) -> int | None:
    """The longest sequence a model was built for (``max_position_embeddings``), if it says."""
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def check_context(prompt_tokens: Sequence[int], budgets: Sequence[int], context: int | None,
                  model: str) -> None:
    """Refuse the first prompt whose tokens plus its budget pass the model's context: past it
    the model's positions are undefined, and the answer would be recorded as a plain cut-off.

    Raises:
        PromptTooLong: the prompt's index, its tokens, the budget and the context.
    """
    if context is None:
        return
    for i, (tokens, budget) in enumerate(zip(prompt_tokens, budgets)):
        if tokens + budget > context:
            raise PromptTooLong(f"a {tokens:,}-token prompt plus {budget} new tokens is past "
                                f"{model}'s context of {context:,} tokens; shorten or drop the "
                                "question, or lower max_new_tokens", i)
