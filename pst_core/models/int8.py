"""Linear layers in int8 for inference on a CPU: int8 weights, int8 activations per row.

A CPU's int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI) run 4x the multiply-adds of
fp32 per instruction; on Qwen-0.5B's MLP shape this layer ran 2.3-3.4x faster than the
oneDNN-packed fp32 one (:mod:`pst_core.models.packed`) from 1 to 1024 rows on a 2-core
AVX-512 VNNI Xeon, 0.7-1.7x with oneDNN held to AVX2 (slower below ~16 rows), at 1.1%
relative error per layer (2% under AVX2, whose int8 path saturates 16-bit sums).

Weights are quantized once, symmetrically per output channel. Activations are quantized at
every call, per row: each row is divided by its largest magnitude before the per-tensor int8
kernel, and the output row multiplied back. Per-tensor activation scales (what torch's
deprecated ``quantize_dynamic`` does) let one outlier token ruin every other row of its batch:
with one value of 300 in a 64-row batch, the other rows' error went from 1.1% to 68%, and small
LMs have such activations. The kernel is oneDNN's quantized linear
(``torch.ops.onednn.qlinear_pointwise``), the one inductor's x86 int8 path calls; its
activations are unsigned, so rows are shifted by 128 (zero point).

For CPU models (a bf16 model's activations are quantized from fp32 and its outputs cast back);
training and GPU models keep ``nn.Linear``. Like the
packed layer, a tied output embedding keeps its original weight for the input lookups.
"""

from __future__ import annotations

import torch
from torch import nn

from pst_core.models.packed import replace_linears

_ROW_RANGE = 127  # quantized magnitude of a row's largest value
_ZERO_POINT = 128  # the kernel's activations are uint8: int8 values shifted by 128


class Int8Linear(nn.Module):
    """``nn.Linear`` for inference with int8 weights and per-row int8 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(1) / _ROW_RANGE).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = torch.round(weight / scale[:, None]).to(torch.int8)
        self.packed = torch.ops.onednn.qlinear_prepack(quantized, None)
        self.weight_scale = scale
        self.weight_zero = torch.zeros(self.out_features, dtype=torch.int32)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.x_scale = torch.tensor(1 / _ROW_RANGE)
        self.x_zero = torch.tensor(_ZERO_POINT, dtype=torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        peak = rows.abs().amax(1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = torch.round(rows * (_ROW_RANGE / peak)).add_(_ZERO_POINT).to(torch.uint8)
        out = torch.ops.onednn.qlinear_pointwise.tensor(
            quantized, self.x_scale, self.x_zero, self.packed, self.weight_scale,
            self.weight_zero, None, 1.0, 0, torch.float32, "none", [], "")
        out.mul_(peak)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantize_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of the model by an :class:`Int8Linear`; the count."""
    return replace_linears(model, Int8Linear)
