"""Train (step 4) through the Hugging Face ``transformers.Trainer``: the same weighted SFT as
:func:`pst_core.train.train_pairs`, for what comes with the Trainer (accelerate's launchers,
DDP, FSDP, DeepSpeed, ``report_to="mlflow"``).

:class:`WeightedNLLTrainer` computes the loop's loss, with the loop's functions: the decoder's
hidden states at the target positions (:func:`hidden_at`), their NLL a vocabulary chunk at a
time (:func:`token_nll`), weighted per example (:func:`weighted_nll`), normalised over the N
examples of the whole optimizer step. :func:`train_pairs_with_trainer` is ``train_pairs`` on it:
the same examples in the same order, the same AdamW, learning-rate schedule, clipping and
checkpointing, the same log rows; on one device the same trained weights (tests/unit/
test_trainer.py). ``pst_core.steps`` still trains with the loop.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from pst_core.errors import ModelError
from pst_core.models.forward import hidden_at, pack_continuations
from pst_core.progress import progress
from pst_core.schemas import TRAIN_LOG_SCHEMA
from pst_core.train import (
    linear_schedule,
    optimizer_steps,
    token_nll,
    training,
    weighted_nll,
)

if TYPE_CHECKING:
    from pst_core.config import TrainConfig


class EpochPermutations(torch.utils.data.Sampler):
    """The loop's order: epoch e is the (e+1)-th ``torch.randperm`` of one generator seeded with
    ``seed``. Drawn again from the seed for the epoch that ``set_epoch`` names (the Trainer and
    accelerate's ``DataLoaderShard`` both call it before iterating), so the order does not depend
    on how often the sampler was iterated; every process draws the same, and accelerate's
    ``BatchSamplerShard`` splits it between processes.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch):
            torch.randperm(self.n, generator=generator)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def collate_pairs(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """A micro-batch of ``{"context", "target", "weight"}`` examples: ``pack_continuations``'s
    tensors (on the CPU; the Trainer moves them) and the examples' weights."""
    input_ids, attention_mask, rows, positions, targets = pack_continuations(
        [(f["context"], f["target"]) for f in features], pad_id, "cpu")
    return {"input_ids": input_ids, "attention_mask": attention_mask, "rows": rows,
            "positions": positions, "targets": targets,
            "weights": torch.tensor([f["weight"] for f in features], dtype=torch.float32)}


class TrainLog(TrainerCallback):
    """``TRAIN_LOG_SCHEMA`` rows, one per optimizer step: ``compute_loss`` adds each micro-batch's
    sums (:meth:`add`), the optimizer step closes the row with the learning rate it ran at (the
    scheduler steps after ``on_optimizer_step``). Under several processes, each logs its own
    examples.
    """

    def __init__(self, peer: str = "", advance: Callable[[int], None] | None = None):
        self.peer, self.advance = peer, advance
        self.rows: list[dict] = []
        self.epoch = -1
        self._sums = [0.0, 0.0, 0, 0]

    def add(self, weighted_sum: float, plain_sum: float, n_examples: int, n_tokens: int) -> None:
        self._sums = [a + b for a, b in zip(self._sums, (weighted_sum, plain_sum, n_examples,
                                                          n_tokens), strict=True)]

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch += 1

    def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
        weighted_sum, plain_sum, n, n_tokens = self._sums
        self.rows.append({"peer": self.peer, "step": len(self.rows) + 1, "epoch": self.epoch,
                          "lr": lr_scheduler.get_last_lr()[0], "loss": plain_sum / n,
                          "weighted_loss": weighted_sum / n, "n_examples": n,
                          "n_target_tokens": n_tokens})
        self._sums = [0.0, 0.0, 0, 0]
        if self.advance is not None:
            self.advance(1)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=TRAIN_LOG_SCHEMA)


class WeightedNLLTrainer(Trainer):
    """A Trainer whose loss is sum_x w(x) * NLL(a* | x) / N over the N examples of one optimizer
    step, as :func:`pst_core.train.train_pairs`'s loop computes it.

    The data are ``{"context", "target", "weight"}`` dicts, batched by :func:`collate_pairs`
    (``remove_unused_columns=False`` keeps the columns the model's forward does not name), in
    :class:`EpochPermutations` order (seeded by ``data_seed``, else ``seed``).

    The normalisation: for each optimizer step the Trainer fetches its micro-batches first
    (``get_batch_samples``) and hands every ``training_step`` their ``num_items_in_batch``.
    Trainer counts that from ``labels`` (tokens other than -100, ``labels[..., 1:]`` for causal
    LMs, in ``_get_num_items_in_batch``); these batches have no labels, so Trainer counts nothing
    and :meth:`get_batch_samples` counts the step's examples instead, summed over processes. A
    micro-batch of B examples then contributes its weighted mean times B / N, so a short last
    micro-batch or step weighs its examples like any other, as in the loop. The loss is thus
    already scaled for gradient accumulation: ``loss_is_scaled_for_ga = True`` stops
    ``training_step`` from dividing it by the accumulation steps (``model_accepts_loss_kwargs``
    only decides that when ``loss_is_scaled_for_ga`` is None, and otherwise only matters to the
    base ``compute_loss`` and the label count, both bypassed here). Data parallel training
    averages the gradients of its processes, so each process's loss is multiplied by their
    number, as Trainer does with ``average_tokens_across_devices``.

    The optimizer and schedule are the loop's, built here rather than passed in ``optimizers=``
    (which Trainer refuses under FSDP): AdamW on every trainable parameter with
    ``args.weight_decay`` (Trainer's own exempts biases and norms) and
    :func:`~pst_core.train.lr_multiplier` with ``args.warmup_steps`` read as the loop's
    ``train.warmup_ratio`` (a number of steps when 1 or more).
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, train_log: TrainLog | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:  # nn.DataParallel would split the flat target tensors wrongly
            raise ValueError("WeightedNLLTrainer trains on one device per process: launch one "
                             "process per GPU (torchrun, accelerate launch)")
        self.train_log = train_log or TrainLog()
        self.add_callback(self.train_log)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        return EpochPermutations(len(dataset), seed)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            params = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=self.args.learning_rate,
                                               weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            warmup = self.args.warmup_steps
            self.lr_scheduler = linear_schedule(
                self.optimizer if optimizer is None else optimizer, num_training_steps,
                warmup if warmup < 1 else warmup / num_training_steps)
        return self.lr_scheduler

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        # A DataLoader draws each epoch's base seed from torch's global stream: fetching data
        # leaves it to dropout, as in the loop.
        with torch.random.fork_rng(devices=[]):
            batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        n_examples = sum(len(batch["weights"]) for batch in batches)
        if self.args.world_size > 1:
            n_examples = int(self.accelerator.gather(torch.tensor([n_examples], device=device))
                             .sum())
        return batches, n_examples

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The micro-batch's share of the step's weighted NLL (a mean over its own examples when
        ``num_items_in_batch`` is None); its sums go to :attr:`train_log` while training."""
        inner = self.accelerator.unwrap_model(model)
        with self.accelerator.autocast():  # args.bf16/fp16: on forward, which the loss skips
            weighted, plain = _inside_forward(model, inner, functools.partial(_batch_nll, inner),
                                              inputs)
        n_batch = len(inputs["weights"])
        loss = weighted * (n_batch / (num_items_in_batch or n_batch)
                           * self.accelerator.num_processes)
        if model.training:
            self.train_log.add(weighted.item() * n_batch, plain.item() * n_batch, n_batch,
                               len(inputs["targets"]))
        return (loss, {"nll": plain}) if return_outputs else loss


def _batch_nll(model, input_ids, attention_mask, rows, positions, targets, weights):
    """(weighted, unweighted) mean NLL of a micro-batch's targets, as the loop computes them."""
    causal_lm, hidden = hidden_at(model, input_ids, attention_mask, rows, positions)
    return weighted_nll(token_nll(causal_lm, hidden, targets), rows, weights)


def _inside_forward(model, inner, fn, inputs: dict):
    """``fn(**inputs)``, run as ``inner``'s forward through ``model`` when accelerate wrapped
    ``inner`` in it (DDP, FSDP, a DeepSpeed engine): their work happens around a forward call
    (DDP's gradient synchronisation is set up there, FSDP gathers its sharded weights there),
    and the loss calls the decoder and the output embedding, not the model's forward. The
    redirection Lightning and TRL use for the same reason.
    """
    if model is inner:
        return fn(**inputs)
    own = vars(inner).get("forward")  # accelerate's mixed-precision wrapper, when there is one
    inner.forward = fn
    try:
        return model(**inputs)
    finally:
        if own is None:
            del inner.forward
        else:
            inner.forward = own


def train_pairs_with_trainer(
    model,
    pad_id: int,
    pairs: list[tuple[list[int], list[int]]],
    weights: Sequence[float],
    cfg: TrainConfig,
    *,
    peer: str,
    seed: int,
    report_to: str | list[str] = "none",
    run_name: str | None = None,
) -> pa.Table:
    """:func:`pst_core.train.train_pairs` through :class:`WeightedNLLTrainer`; ``report_to``
    and ``run_name`` as Trainer's (``"mlflow"``, say; its integrations read their settings
    from the environment, e.g. ``pst_core.tracking.trainer_reporting``).

    On the model's device: the CPU (``use_cpu``) or the one GPU this process trains on
    (Trainer would move a model elsewhere to it). Trainer saves no checkpoint; its output
    directory is a temporary one. ``TrainingArguments.use_cache`` is the model's own, since
    Trainer writes it into the model's config. Gradient checkpointing is switched on as the
    loop does (:func:`pst_core.train.training`), not by Trainer: its auto setting needs the model
    and the micro-batch's size.
    """
    if not pairs:  # Trainer cannot size an epoch of no examples; the loop takes no step
        return pa.Table.from_pylist([], schema=TRAIN_LOG_SCHEMA)
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="pst-trainer-") as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, report_to=report_to, run_name=run_name,
            save_strategy="no", seed=seed,
            use_cpu=device.type == "cpu", per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            num_train_epochs=cfg.num_epochs, learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio,
            max_grad_norm=cfg.max_grad_norm or 0.0, logging_steps=1, disable_tqdm=True,
            remove_unused_columns=False, dataloader_pin_memory=device.type != "cpu",
            use_cache=bool(getattr(model.config, "use_cache", False)),
        )
        if device.type != "cpu" and args.device != device:
            raise ModelError(f"peer {peer!r} is on {device}, but the Trainer trains on "
                             f"{args.device}: make only the peer's GPU visible "
                             "(CUDA_VISIBLE_DEVICES)")
        data = [{"context": ctx, "target": cont, "weight": float(w)}
                for (ctx, cont), w in zip(pairs, weights, strict=True)]
        with training(model, cfg, pairs, peer), progress(
                f"{peer}: train", optimizer_steps(len(pairs), cfg)) as advance:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                trainer = WeightedNLLTrainer(  # which reseeds torch: dropout goes on from here
                    model=model, args=args, train_dataset=data,
                    train_log=TrainLog(peer, advance),
                    data_collator=functools.partial(collate_pairs, pad_id=pad_id))
            trainer.remove_callback(PrinterCallback)  # it prints every step's logs
            trainer.train()
        return trainer.train_log.table()

