"""Weighted SFT: the loss, zero-weight examples, fitting the targets, and the training loop:
accumulation, warmup and gradient clipping."""

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pst_core.config import TrainConfig
from pst_core.models.hf import TransformersBackend
from pst_core.models.source import load_model
from pst_core.train import add_adapters, token_nll, train_peer, weighted_nll


def test_weighted_nll_is_a_weighted_mean_of_example_means():
    logits = torch.randn(5, 11)
    targets = torch.tensor([1, 2, 3, 4, 5])
    example = torch.tensor([0, 0, 1, 1, 1])
    weights = torch.tensor([2.0, 0.5])
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weighted, plain = weighted_nll(nll, example, weights)
    per_example = torch.stack([nll[:2].mean(), nll[2:].mean()])
    assert torch.allclose(weighted, (weights * per_example).sum() / 2)
    assert torch.allclose(plain, per_example.mean())


def test_zero_weight_example_contributes_no_gradient():
    logits = torch.randn(6, 9, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    example = torch.tensor([0, 0, 1, 1, 2, 2])
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weighted, _ = weighted_nll(nll, example, torch.tensor([1.0, 0.0, 3.0]))
    weighted.backward()
    assert torch.all(logits.grad[2:4] == 0)
    assert torch.any(logits.grad[:2] != 0) and torch.any(logits.grad[4:] != 0)


def test_chunked_token_nll_equals_full_logits(tiny_llama_dir, monkeypatch):
    """Logits a chunk at a time, recomputed in backward: the same NLL and the same gradients."""
    from pst_core.models.forward import output_logits

    monkeypatch.setattr("pst_core.train._LOSS_CHUNK", 3)
    model, _ = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    hidden = torch.randn(10, model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, model.config.vocab_size, (10,))
    full = torch.nn.functional.cross_entropy(output_logits(model, hidden), targets,
                                             reduction="none")
    (full_grad,) = torch.autograd.grad(full.sum(), hidden)
    chunked = token_nll(model, hidden, targets)
    (chunked_grad,) = torch.autograd.grad(chunked.sum(), hidden)
    assert torch.allclose(chunked, full, atol=1e-6)
    assert torch.allclose(chunked_grad, full_grad, atol=1e-6)


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
        cfg = TrainConfig(finetune="full", num_epochs=1, batch_size=2, learning_rate=1e-3)
        model = add_adapters(model, cfg, None, seed=1)
        log = train_peer(model, tokenizer, ["a? ", "b? ", "c? "], ["1", "2", "3"], [1, 1, 1],
                         cfg, peer="t", seed=1)
        results.append((log.to_pylist(), next(model.parameters()).detach().clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


PROMPTS = ["How many apples? ", "How many cats are left? ", "What is the total? ",
           "How many pens? ", "How far did she walk? ", "What is 3 + 4? "]
TARGETS = ["The answer is 12.", "The answer is 3.", "The answer is 40.",
           "The answer is 7.", "The answer is 15.", "The answer is 7."]
WEIGHTS = [1.0, 0.5, 2.0, 0.0, 1.5, 1.0]
# Equal updates agree to ~3e-6 (AdamW at lr 1e-3 amplifies summation-order noise in near-zero
# gradients); scaling a step wrongly moved weights by 1e-4 to 3e-3.
ATOL = 2e-5


def _train(model_dir, n_examples, **changes):
    """Train a fresh tiny Llama on the first ``n_examples``; its log and flat trainable weights."""
    model, tokenizer = load_model(str(model_dir), dtype="float32", device="cpu")
    cfg = TrainConfig(**{"learning_rate": 1e-3, "lora_dropout": 0.0, "max_grad_norm": None,
                         "num_epochs": 1, **changes})
    model = add_adapters(model, cfg, None, seed=0)
    log = train_peer(model, tokenizer, PROMPTS[:n_examples], TARGETS[:n_examples],
                     WEIGHTS[:n_examples], cfg, peer="t", seed=0)
    weights = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    return log, weights


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize(("n_examples", "splits"), [
    (6, [(6, 1), (2, 3), (1, 6)]),
    (5, [(5, 1), (2, 3)]),  # micro-batches of 2, 2 and 1 examples in one step
])
def test_splitting_a_step_into_micro_batches_leaves_the_update_unchanged(
    tiny_llama_dir, method, n_examples, splits
):
    runs = [_train(tiny_llama_dir, n_examples, finetune=method, num_epochs=2, batch_size=b,
                   gradient_accumulation_steps=a) for b, a in splits]
    (log, reference), others = runs[0], runs[1:]
    assert log.column("n_examples").to_pylist() == [n_examples, n_examples]
    assert not torch.allclose(reference, _train(tiny_llama_dir, 0, finetune=method)[1])  # it moved
    for other_log, weights in others:
        torch.testing.assert_close(weights, reference, rtol=0, atol=ATOL)
        for column in ("loss", "weighted_loss", "lr", "n_examples", "n_target_tokens"):
            assert other_log.column(column).to_pylist() == pytest.approx(
                log.column(column).to_pylist(), rel=1e-5)


def test_a_short_last_step_is_scaled_by_its_own_size(tiny_llama_dir):
    """5 examples, 1 per micro-batch, 2 per step: the third step holds one example and must
    update as a one-example step does (batch_size=2 without accumulation), not at half size."""
    log, accumulated = _train(tiny_llama_dir, 5, batch_size=1, gradient_accumulation_steps=2)
    plain_log, plain = _train(tiny_llama_dir, 5, batch_size=2, gradient_accumulation_steps=1)
    assert log.column("n_examples").to_pylist() == [2, 2, 1]
    assert plain_log.column("n_examples").to_pylist() == [2, 2, 1]
    torch.testing.assert_close(accumulated, plain, rtol=0, atol=ATOL)
    assert log.column("weighted_loss").to_pylist() == pytest.approx(
        plain_log.column("weighted_loss").to_pylist(), rel=1e-5)


def test_warmup_rises_linearly_then_decays(tiny_llama_dir):
    # 4 examples x 2 epochs, one example per step: 8 steps, of which 0.25 -> 2 warm up.
    common = {"num_epochs": 2, "batch_size": 1, "gradient_accumulation_steps": 1}
    log, _ = _train(tiny_llama_dir, 4, warmup_ratio=0.25, **common)
    expected = [0, 1 / 2, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    assert log.column("lr").to_pylist() == pytest.approx([1e-3 * m for m in expected])
    default_log, _ = _train(tiny_llama_dir, 4, **common)  # no warmup: 1 - step / total, as before
    assert default_log.column("lr").to_pylist() == pytest.approx(
        [1e-3 * (1 - s / 8) for s in range(8)])


def _step_grad_norms(model_dir, max_grad_norm) -> list[float]:
    """The global gradient norm each optimizer step is taken with."""
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        _train(model_dir, 4, max_grad_norm=max_grad_norm, batch_size=2,
               gradient_accumulation_steps=1)
    finally:
        handle.remove()
    return norms


def test_max_grad_norm_clips_and_none_or_zero_does_not(tiny_llama_dir):
    unclipped = _step_grad_norms(tiny_llama_dir, None)
    assert len(unclipped) == 2 and min(unclipped) > 1e-2
    assert _step_grad_norms(tiny_llama_dir, 1e6) == pytest.approx(unclipped, rel=1e-6)  # never binds
    assert _step_grad_norms(tiny_llama_dir, 0.0) == pytest.approx(unclipped, rel=1e-6)
    assert _step_grad_norms(tiny_llama_dir, 1e-3) == pytest.approx([1e-3, 1e-3], rel=1e-4)
    default = _step_grad_norms(tiny_llama_dir, 1.0)[0]  # the first step starts from equal weights
    assert default == pytest.approx(min(unclipped[0], 1.0), rel=1e-5)
