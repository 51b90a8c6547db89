"""Prompt rendering and encoding shared by every backend, so all see the same token ids."""

from __future__ import annotations

from pst_core.prompts import Prompt, Style


def prompt_style(tokenizer, requested: str) -> Style:
    """Resolve ``auto`` to ``chat`` when the tokenizer has a chat template, else ``fewshot``."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return "chat" if tokenizer.chat_template else "fewshot"


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The exact text the model sees: the chat template around a chat prompt, else the text."""
    if prompt.style == "fewshot":
        return prompt.text
    messages = [{"role": "user", "content": prompt.text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt; BOS is added only if the text does not already carry it."""
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def encode_continuation(tokenizer, text: str) -> list[int]:
    """Token ids of a continuation: no special tokens, independent of the context."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def eos_ids(model, tokenizer) -> list[int]:
    """The tokens that end a response: the generation config's EOS (one or a list) and the
    tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
