"""Weighted SFT: the loss, zero-weight examples, and that training fits the targets."""

import torch

from pst_core.config import TrainConfig
from pst_core.models.hf import TransformersBackend
from pst_core.models.source import load_model
from pst_core.train import add_adapters, train_peer, weighted_nll


def test_weighted_nll_is_a_weighted_mean_of_example_means():
    logits = torch.randn(5, 11)
    targets = torch.tensor([1, 2, 3, 4, 5])
    example = torch.tensor([0, 0, 1, 1, 1])
    weights = torch.tensor([2.0, 0.5])
    weighted, plain = weighted_nll(logits, targets, example, weights)
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    per_example = torch.stack([nll[:2].mean(), nll[2:].mean()])
    assert torch.allclose(weighted, (weights * per_example).sum() / 2)
    assert torch.allclose(plain, per_example.mean())


def test_zero_weight_example_contributes_no_gradient():
    logits = torch.randn(6, 9, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    example = torch.tensor([0, 0, 1, 1, 2, 2])
    weighted, _ = weighted_nll(logits, targets, example, torch.tensor([1.0, 0.0, 3.0]))
    weighted.backward()
    assert torch.all(logits.grad[2:4] == 0)
    assert torch.any(logits.grad[:2] != 0) and torch.any(logits.grad[4:] != 0)


def _target_nll(model, tokenizer, prompts, targets):
    backend = TransformersBackend(model, tokenizer)
    return -sum(s.logprob_mean for s in backend.score(prompts, targets)) / len(prompts)


def test_lora_training_lowers_the_nll_of_its_targets(tiny_llama_dir):
    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    prompts = ["How many apples? ", "How many cats are left? ", "What is the total? "]
    targets = ["The answer is 12.", "The answer is 3.", "The answer is 40."]
    before = _target_nll(model, tokenizer, prompts, targets)
    cfg = TrainConfig(num_epochs=8, batch_size=3, gradient_accumulation_steps=1,
                      learning_rate=1e-2, lora_r=8)
    model = add_adapters(model, cfg, None, seed=0)
    log = train_peer(model, tokenizer, prompts, targets, [1.0, 1.0, 1.0], cfg, peer="t", seed=0)
    after = _target_nll(model, tokenizer, prompts, targets)
    assert log.num_rows == 8 and log.column("step").to_pylist() == list(range(1, 9))
    assert after < before - 0.5, (before, after)
    losses = log.column("loss").to_pylist()
    assert losses[-1] < losses[0]


def test_full_fine_tuning_and_determinism(tiny_llama_dir):
    results = []
    for _ in range(2):
        model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
        cfg = TrainConfig(method="full", num_epochs=1, batch_size=2, learning_rate=1e-3)
        model = add_adapters(model, cfg, None, seed=1)
        log = train_peer(model, tokenizer, ["a? ", "b? ", "c? "], ["1", "2", "3"], [1, 1, 1],
                         cfg, peer="t", seed=1)
        results.append((log.to_pylist(), next(model.parameters()).detach().clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])
