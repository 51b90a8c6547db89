"""The checkpoint format: LoRA adapters and full models are saved, told apart and loaded back."""

import pytest
import torch

from pst_core.config import PeerConfig, TrainConfig
from pst_core.models.checkpoint import adapter_rank, is_adapter, is_checkpoint, save_checkpoint
from pst_core.models.hf import TransformersBackend
from pst_core.models.loading import load_backend
from pst_core.models.source import load_model
from pst_core.train import add_adapters


@pytest.mark.parametrize("method", ["lora", "full"])
def test_checkpoint_round_trip(tmp_path, tiny_llama_dir, method):
    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    model = add_adapters(model, TrainConfig(finetune=method, lora_r=4), None, seed=0)
    with torch.no_grad():  # move the weights off the base model so loading must apply them
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    out = tmp_path / "ckpt"
    assert not is_checkpoint(out)
    save_checkpoint(model, tokenizer, out)
    assert is_checkpoint(out) and is_adapter(out) == (method == "lora")
    if method == "lora":
        assert adapter_rank(out) == 4
    peer = PeerConfig(name="t", source=str(tiny_llama_dir), dtype="float32", device="cpu")
    prompts, targets = ["How many apples? "], ["The answer is 12."]
    in_memory = TransformersBackend(model.eval(), tokenizer).score(prompts, targets)[0]
    loaded = load_backend(peer, out).score(prompts, targets)[0]
    base = load_backend(peer).score(prompts, targets)[0]
    assert loaded.logprob_sum == pytest.approx(in_memory.logprob_sum, abs=1e-4)
    assert loaded.logprob_sum != pytest.approx(base.logprob_sum, abs=1e-3)
