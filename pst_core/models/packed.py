"""Linear layers with oneDNN-packed weights, for inference on a CPU.

PyTorch's CPU ``nn.Linear`` calls MKL's sgemm, which runs skinny products (a decode step's
8-64 rows) far below the machine's peak; oneDNN with the weight reordered once into its blocked
layout runs the same product 1.2-1.9x faster (Qwen-0.5B's MLP shape, 8 to 128 rows, fp32,
measured on a 2-core AVX-512 Xeon). This is the weight prepacking that inductor's freezing and
IPEX do, without a compile step. Greedy outputs of the evaluation workload were identical
(bench/bench_generate.py compares them on every run).

Only for fp32 models on a CPU with oneDNN (``torch.backends.mkldnn``); GPU models and the
training path keep ``nn.Linear``. The packed copy replaces the weight, except a tied output
embedding, whose original stays for the input embedding's lookups.
"""

from __future__ import annotations

import torch
from torch import nn


class PackedLinear(nn.Module):
    """``nn.Linear`` for inference with the weight in oneDNN's blocked layout."""

    def __init__(self, linear: nn.Linear, rows_hint: int = 16):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def can_pack(model: nn.Module) -> bool:
    """Whether ``model`` is an fp32 CPU model and this torch has oneDNN."""
    param = next(model.parameters())
    return (param.device.type == "cpu" and param.dtype == torch.float32
            and torch.backends.mkldnn.is_available())


def replace_linears(model: nn.Module, layer) -> int:
    """Replace every ``nn.Linear`` of the model by ``layer(linear)``; the count."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, layer(child))
                count += 1
    return count


def pack_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of the model by a :class:`PackedLinear`; the count."""
    return replace_linears(model, PackedLinear)
