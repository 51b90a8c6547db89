"""Train (docs/methods.md, step 4): weighted SFT of a peer on (solo prompt(x) -> a*).

L_k = sum_x w_k(x) * NLL_{M_k}(a* | x) / N over the N examples of one optimizer step (all its
accumulated micro-batches, the last short one of an epoch included), where NLL is the mean token
negative log-likelihood of the target's tokens (the loss is on the response only; prompt tokens
are never predicted). So how a step is split into micro-batches does not change the update.
LoRA adapters (peft) by default, full fine-tuning as an option.
The logits are computed only at the target positions, as in scoring, and only a chunk of them
at a time (:func:`token_nll`): Gemma's 262k and Qwen's 152k vocabularies make logits the memory
peak otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import torch
import torch.utils.checkpoint

from pst_core.models.forward import hidden_at, output_logits, pack_continuations
from pst_core.models.memory import (
    available_bytes,
    out_of_memory_as_error,
    unmapped_large_blocks,
)
from pst_core.models.tokens import encode_continuation, encode_prompt
from pst_core.progress import progress
from pst_core.schemas import TRAIN_LOG_SCHEMA

if TYPE_CHECKING:
    from pst_core.config import TrainConfig

log = logging.getLogger(__name__)

_LOSS_CHUNK = 256  # target tokens whose logits exist at once, forward and backward


def token_nll(causal_lm, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[T] NLL of each target token from its final hidden state, ``_LOSS_CHUNK`` tokens at a time.

    Each chunk's logits are recomputed in the backward pass (activation checkpointing) instead of
    kept: a micro-batch of 4 x 300 target tokens held 4 x 0.7 GB of logits, their float copy,
    softmax and gradient for Qwen's 152k vocabulary (the demo's training peaked at 19 GB).
    """
    def chunk_nll(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = output_logits(causal_lm, h)
        return torch.nn.functional.cross_entropy(logits.float(), t, reduction="none")

    return torch.cat([
        torch.utils.checkpoint.checkpoint(chunk_nll, hidden[s : s + _LOSS_CHUNK],
                                          targets[s : s + _LOSS_CHUNK], use_reentrant=False)
        for s in range(0, len(targets), _LOSS_CHUNK)
    ])


def weighted_nll(
    token_nll: torch.Tensor, example_index: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of per-example mean token NLLs.

    Args:
        token_nll: [T] NLL of the T target tokens of a batch.
        example_index: [T] which example (0..B-1) each token belongs to.
        weights: [B] per-example weights.

    Returns:
        (weighted loss = sum_b w_b * nll_b / B, unweighted loss = mean_b nll_b).
    """
    n_examples = weights.shape[0]
    sums = torch.zeros(n_examples, dtype=token_nll.dtype, device=token_nll.device)
    sums = sums.index_add(0, example_index, token_nll)
    counts = torch.bincount(example_index, minlength=n_examples).clamp(min=1)
    per_example = sums / counts
    return (weights.to(per_example) * per_example).sum() / n_examples, per_example.mean()


def tokenize_examples(
    tokenizer, prompts: Sequence[str], targets: Sequence[str], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + EOS) pairs; targets are cut so the pair fits ``max_length``."""
    pairs = []
    for prompt, target in zip(prompts, targets, strict=True):
        ctx = encode_prompt(tokenizer, prompt)
        cont = encode_continuation(tokenizer, target) + [tokenizer.eos_token_id]
        room = max_length - len(ctx)
        if room < 1:
            ctx, room = ctx[-(max_length - 1):], 1
        pairs.append((ctx, cont[:room]))
    return pairs


def add_adapters(model, cfg: TrainConfig, adapter_dir: Path | None, seed: int):
    """Make ``model`` trainable: new LoRA adapters, the previous round's, or all weights."""
    torch.manual_seed(seed)
    if cfg.finetune == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train_peer(
    model,
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str],
    weights: Sequence[float],
    cfg: TrainConfig,
    *,
    peer: str,
    seed: int,
    run_name: str | None = None,
) -> pa.Table:
    """Fine-tune ``model`` in place on weighted (prompt -> target) examples.

    Args:
        model: a trainable model (``add_adapters``).
        prompts: rendered solo prompts.
        targets: aggregate responses a*.
        weights: per-example weights (PMI weights; all 1 for uniform).
        cfg: the train section; ``cfg.engine`` picks this module's loop or the Hugging Face
            Trainer (``pst_core.trainer``), which train the same weights.
        run_name: the Trainer's run name for its ``report_to`` integrations.

    Returns:
        The ``TRAIN_LOG_SCHEMA`` rows, one per optimizer step.
    """
    pairs = tokenize_examples(tokenizer, prompts, targets, cfg.max_length)
    if cfg.engine == "trainer":
        from pst_core.trainer import train_pairs_with_trainer

        return train_pairs_with_trainer(model, tokenizer.pad_token_id, pairs, weights, cfg,
                                        peer=peer, seed=seed, report_to=cfg.report_to,
                                        run_name=run_name)
    return train_pairs(model, tokenizer.pad_token_id, pairs, weights, cfg, peer=peer, seed=seed)


def train_pairs(
    model,
    pad_id: int,
    pairs: list[tuple[list[int], list[int]]],
    weights: Sequence[float],
    cfg: TrainConfig,
    *,
    peer: str,
    seed: int,
) -> pa.Table:
    """``train_peer`` on examples already tokenized as (context ids, target ids) pairs."""
    weight_t = torch.tensor(list(weights), dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total_steps = max(1, optimizer_steps(len(pairs), cfg))
    schedule = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
    generator = torch.Generator().manual_seed(seed)
    log_rows = []
    with (training(model, cfg, pairs, peer),
          progress(f"{peer}: train", total_steps) as advance):
        for epoch in range(cfg.num_epochs):
            order = torch.randperm(len(pairs), generator=generator).tolist()
            for step in group_steps(order, cfg.batch_size, cfg.gradient_accumulation_steps):
                row = _accumulate_gradients(model, pad_id, pairs, weight_t, step)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                lr = schedule.get_last_lr()[0]
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                log_rows.append({"peer": peer, "step": len(log_rows) + 1, "epoch": epoch,
                                 "lr": lr, **row})
                advance(1)
    return pa.Table.from_pylist(log_rows, schema=TRAIN_LOG_SCHEMA)


@contextmanager
def training(model, cfg: TrainConfig, pairs, peer: str) -> Iterator[None]:
    """What a training run on ``pairs`` runs in, the loop's and the Trainer's
    (:mod:`pst_core.trainer`) alike: the model in train mode with gradient checkpointing as
    :func:`uses_gradient_checkpointing` decides, large blocks unmapped, out of memory as a
    one-line error; back in eval mode without checkpointing after."""
    longest = max((len(ctx) + len(cont) for ctx, cont in pairs), default=0)
    checkpointing = uses_gradient_checkpointing(model, cfg, cfg.batch_size * longest)
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()
    hint = "; raise train.gradient_accumulation_steps to keep the step's size" + (
        "" if checkpointing else ", or set train.gradient_checkpointing: true")
    with (out_of_memory_as_error(peer, "training", "train.batch_size", cfg.batch_size, hint),
          unmapped_large_blocks()):
        yield
    model.eval()
    if checkpointing:
        model.gradient_checkpointing_disable()


def optimizer_steps(n_examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of a run on ``n_examples``: a short last micro-batch or step counts."""
    per_epoch = math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.gradient_accumulation_steps)
    return per_epoch * cfg.num_epochs


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    """A LambdaLR of :func:`lr_multiplier` over ``total_steps`` optimizer steps."""
    # Less a hair so that float noise (0.3 * 10 = 3.0000000000000004) adds no warmup step; the
    # last step is never warmup (a lone step would otherwise run at learning rate 0).
    warmup_steps = min(math.ceil(warmup_ratio * total_steps - 1e-9), total_steps - 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(lr_multiplier, total=total_steps, warmup=warmup_steps)
    )


CHECKPOINTING_ABOVE = 1_000_000_000  # parameters; the auto setting's threshold
# Bytes of stored activations per token, layer and hidden unit of a LoRA step in fp32, measured:
# Qwen-0.5B, micro-batches of 4 x 410 tokens, peaked 15.4 GiB without checkpointing and 7.0 GiB
# with it (the model, its adapters and optimizer about 3 GiB of each).
ACTIVATION_BYTES = 85 * 4
ACTIVATION_SHARE = 0.25  # of the available memory, above which auto recomputes activations


def uses_gradient_checkpointing(model, cfg: TrainConfig, batch_tokens: int = 0) -> bool:
    """``train.gradient_checkpointing``, or when null: on for models over 1B parameters, or
    when a micro-batch of ``batch_tokens`` tokens would store activations over a quarter of the
    memory available now (the demo's LoRA step of Qwen-0.5B: 12 GB of them); off otherwise,
    where recomputing them would only cost time (about a quarter more, measured).
    """
    if cfg.gradient_checkpointing is not None:
        return cfg.gradient_checkpointing
    if sum(p.numel() for p in model.parameters()) > CHECKPOINTING_ABOVE:
        return True
    text = model.config.get_text_config()
    activations = ACTIVATION_BYTES * text.hidden_size * text.num_hidden_layers * batch_tokens
    device = next(model.parameters()).device
    return activations > ACTIVATION_SHARE * available_bytes(device)


def group_steps(order: list[int], batch_size: int, accumulation: int) -> list[list[list[int]]]:
    """An epoch's example indices cut into micro-batches, grouped into optimizer steps.

    Example:
        >>> group_steps([4, 0, 3, 1, 2], batch_size=2, accumulation=2)
        [[[4, 0], [3, 1]], [[2]]]
    """
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]


def lr_multiplier(step: int, total: int, warmup: int) -> float:
    """The learning rate's share of its peak at ``step`` (from 0) of ``total`` optimizer steps.

    Linear warmup from 0 over ``warmup`` steps, then linear decay towards 0, as transformers'
    ``get_linear_schedule_with_warmup`` (which TRL's ``warmup_ratio`` drives). With no warmup
    this is 1 - step / total.
    """
    if step < warmup:
        return step / warmup
    return (total - step) / max(1, total - warmup)


def _accumulate_gradients(model, pad_id: int, pairs, weights: torch.Tensor,
                          step: list[list[int]]) -> dict:
    """Backpropagate one optimizer step's micro-batches; return its log columns.

    Each micro-batch's loss (a mean over its own B examples) is scaled by B / N, N the examples
    in the whole step, so the accumulated gradient is that of sum_x w(x) NLL(x) / N: a short
    last micro-batch or step weighs its examples like any other.
    """
    device = next(model.parameters()).device
    n_step = sum(len(batch) for batch in step)
    weighted_sum = plain_sum = 0.0
    n_tokens = 0
    for batch in step:
        ids, mask, rows, positions, target_ids = pack_continuations(
            [pairs[i] for i in batch], pad_id, device
        )
        causal_lm, hidden = hidden_at(model, ids, mask, rows, positions)
        weighted, plain = weighted_nll(token_nll(causal_lm, hidden, target_ids), rows,
                                       weights[batch].to(device))
        (weighted * (len(batch) / n_step)).backward()
        weighted_sum += weighted.item() * len(batch)
        plain_sum += plain.item() * len(batch)
        n_tokens += len(target_ids)
    return {"loss": plain_sum / n_step, "weighted_loss": weighted_sum / n_step,
            "n_examples": n_step, "n_target_tokens": n_tokens}
