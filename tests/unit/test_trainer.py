"""The Trainer path (pst_core.trainer) trains as the loop (pst_core.train.train_pairs) does: the
same weights and log rows from the same examples, weights, order and settings, a short last
micro-batch or step included; the loss goes through a wrapper's forward (DDP); out of memory is
the loop's one-line error."""

import pytest
import torch

from pst_core.config import TrainConfig
from pst_core.errors import ModelError
from pst_core.models.source import load_model
from pst_core.train import add_adapters, tokenize_examples, train_pairs
from pst_core.trainer import (
    EpochPermutations,
    WeightedNLLTrainer,
    collate_pairs,
    train_pairs_with_trainer,
)

PROMPTS = ["How many apples? ", "How many cats are left? ", "What is the total? ",
           "How many pens? ", "How far did she walk? ", "What is 3 + 4? "]
TARGETS = ["The answer is 12.", "The answer is 3.", "The answer is 40.",
           "The answer is 7.", "The answer is 15.", "The answer is 7."]
WEIGHTS = [1.0, 0.5, 2.0, 0.0, 1.5, 1.0]


def _train(train, model_dir, n_examples, **changes):
    """A fresh tiny Llama trained by ``train`` on the first ``n_examples``: its log rows and
    flat trainable weights."""
    model, tokenizer = load_model(str(model_dir), dtype="float32", device="cpu")
    cfg = TrainConfig(**{"learning_rate": 1e-3, "num_epochs": 2, **changes})
    model = add_adapters(model, cfg, None, seed=0)
    pairs = tokenize_examples(tokenizer, PROMPTS[:n_examples], TARGETS[:n_examples],
                              cfg.max_length)
    log = train(model, tokenizer.pad_token_id, pairs, WEIGHTS[:n_examples], cfg, peer="t",
                seed=3)
    assert not model.training
    return log, torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize(("n_examples", "changes", "n_step_examples"), [
    # LoRA with dropout, warmup and clipping that binds
    (6, {"batch_size": 2, "gradient_accumulation_steps": 2, "warmup_ratio": 0.3,
         "lora_dropout": 0.1, "max_grad_norm": 1e-3}, [4, 2, 4, 2]),
    # micro-batches of 2, 2 and 1 in one step, gradient checkpointing
    (5, {"batch_size": 2, "gradient_accumulation_steps": 3, "gradient_checkpointing": True},
     [5, 5]),
    # a last step of one micro-batch of one example; full fine-tuning
    (5, {"batch_size": 2, "gradient_accumulation_steps": 2, "finetune": "full",
         "max_grad_norm": None}, [4, 1, 4, 1]),
])
def test_trainer_trains_as_the_loop(tiny_llama_dir, n_examples, changes, n_step_examples):
    loop_log, loop_weights = _train(train_pairs, tiny_llama_dir, n_examples, **changes)
    log, weights = _train(train_pairs_with_trainer, tiny_llama_dir, n_examples, **changes)
    untrained = _train(train_pairs, tiny_llama_dir, 0, **changes)[1]
    assert (loop_weights - untrained).abs().max() > 1e-4  # it moved
    assert (weights - loop_weights).abs().max() < 1e-6
    assert log.schema == loop_log.schema
    assert log.column("n_examples").to_pylist() == n_step_examples
    for column in ("peer", "step", "epoch", "n_examples", "n_target_tokens"):
        assert log.column(column).to_pylist() == loop_log.column(column).to_pylist()
    for column in ("loss", "weighted_loss", "lr"):
        assert log.column(column).to_pylist() == pytest.approx(
            loop_log.column(column).to_pylist(), rel=1e-6)


def test_sampler_yields_the_loops_order_for_any_epoch():
    generator = torch.Generator().manual_seed(7)
    loop = [torch.randperm(5, generator=generator).tolist() for _ in range(3)]
    sampler = EpochPermutations(5, seed=7)
    for epoch in (2, 0, 1, 1):
        sampler.set_epoch(epoch)
        assert list(sampler) == loop[epoch]


def test_the_loss_runs_inside_a_wrappers_forward(tiny_llama_dir, tmp_path):
    """Wrapped in DDP, the loss is computed in DDP's forward (where DDP prepares its gradient
    synchronisation), with the gradients of the unwrapped model; the model's forward is its own
    again after."""
    from torch.nn.parallel import DistributedDataParallel
    from transformers import TrainingArguments

    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    model = add_adapters(model, TrainConfig(lora_dropout=0.0), None, seed=0)
    pairs = tokenize_examples(tokenizer, PROMPTS[:3], TARGETS[:3], 64)
    batch = collate_pairs([{"context": c, "target": t, "weight": w}
                           for (c, t), w in zip(pairs, WEIGHTS[:3], strict=True)],
                          tokenizer.pad_token_id)
    trainer = WeightedNLLTrainer(model=model, args=TrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
        remove_unused_columns=False))

    def gradients(wrapped):
        model.zero_grad()
        trainer.compute_loss(wrapped, batch, num_items_in_batch=4).backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain = gradients(model)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0,
                                         world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        calls = []
        ddp.register_forward_pre_hook(lambda module, args: calls.append(module))
        wrapped = gradients(ddp)
    finally:
        torch.distributed.destroy_process_group()
    assert calls == [ddp] and "forward" not in vars(model)
    for a, b in zip(plain, wrapped, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_out_of_memory_names_train_batch_size(tiny_llama_dir):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    cfg = TrainConfig(batch_size=2, gradient_accumulation_steps=1, lora_r=4)
    model = add_adapters(model, cfg, None, seed=0)
    model.base_model.model.model.forward = out_of_memory
    pairs = tokenize_examples(tokenizer, ["Q? "], ["The answer is 1."], cfg.max_length)
    with pytest.raises(ModelError, match=r"^peer 'llama' ran out of GPU memory in training at "
                                         r"batch size 2: lower train\.batch_size \(now 2\)"):
        train_pairs_with_trainer(model, tokenizer.pad_token_id, pairs, [1.0], cfg,
                                 peer="llama", seed=0)
