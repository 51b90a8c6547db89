"""Int8 inference layers: close to fp32 per row, robust to another row's outlier, whole models."""

import pytest
import torch

from pst_core.models.backend import SamplingParams
from pst_core.models.hf import TransformersBackend
from pst_core.models.int8 import Int8Linear
from pst_core.models.spec import PeerConfig


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


@torch.inference_mode()
def test_rows_keep_their_precision_next_to_an_outlier():
    """Per-row activation scales: one huge value in row 0 leaves the other rows at ~1% error
    (a per-tensor scale put them at 68%); only its own row is coarser."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    layer = Int8Linear(linear)
    x = torch.randn(3, 16, 256)
    x[0, 0, 7] = 300.0
    got, want = layer(x), linear(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert _relative_error(got[1:], want[1:]) < 0.03
    assert _relative_error(got[0, 1:], want[0, 1:]) < 0.03
    assert _relative_error(got[0, 0], want[0, 0]) < 0.1


@torch.inference_mode()
def test_bf16_layers_stay_bf16():
    linear = torch.nn.Linear(64, 32).bfloat16()
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    got = Int8Linear(linear)(x)
    assert got.dtype == torch.bfloat16
    assert _relative_error(got.float(), linear(x).float()) < 0.03


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_int8_peer_scores_like_fp32(tiny_model_dirs, arch):
    """A peer with ``quantize: int8`` loads every linear layer as int8 and scores continuations
    within a few hundredths of a nat per token of the fp32 model."""
    path = str(tiny_model_dirs[arch])
    int8 = TransformersBackend.from_config(
        PeerConfig(name="tiny", source=path, dtype="float32", device="cpu", quantize="int8"))
    fp32 = TransformersBackend.from_config(
        PeerConfig(name="tiny", source=path, dtype="float32", device="cpu"))
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    assert any(isinstance(m, Int8Linear) for m in int8.model.modules())
    contexts = ["Tom has 3 apples and buys 4 more.", "Q"]
    continuations = [" He has 7 apples. The answer is 7.", " 12"]
    for a, b in zip(int8.score(contexts, continuations), fp32.score(contexts, continuations)):
        assert a.n_tokens == b.n_tokens
        assert abs(a.logprob_sum - b.logprob_sum) / a.n_tokens < 0.05
    [[answer]] = int8.generate(["How many?"], SamplingParams(max_new_tokens=6))
    assert answer.n_tokens > 0


def test_quantize_is_none_or_int8():
    assert PeerConfig(name="p", source="x").quantize == "none"
    with pytest.raises(ValueError, match="quantize"):
        PeerConfig(name="p", source="x", quantize="int4")
