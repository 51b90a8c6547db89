"""fp32 against bf16 matmuls on this CPU, in one run: which dtype ``dtype: auto`` should pick.

Multiplies activations of 1 to 512 rows (decode steps to prompt and training batches) by a
weight of Qwen-0.5B's MLP shape (896 x 4864) in each dtype and prints the FLOP/s and their
ratio, with the CPU flags that decide it (``pst_core.models.source.cpu_prefers_bf16``).

    python bench/bench_dtype.py
"""

from __future__ import annotations

import time

import torch

from pst_core.models.source import cpu_prefers_bf16
from pst_core.provenance import cpu_flags, cpu_name

ROWS = ((1, 200), (16, 100), (64, 50), (512, 10))  # (activation rows, repetitions)


def gflops(dtype: torch.dtype, rows: int, repeats: int, k: int = 896, n: int = 4864) -> float:
    a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * k * n * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, {cpu_flags()}")
    print(f"dtype auto picks {'bf16' if cpu_prefers_bf16() else 'fp32'} here")
    for rows, repeats in ROWS:
        fp32 = gflops(torch.float32, rows, repeats)
        bf16 = gflops(torch.bfloat16, rows, repeats)
        print(f"rows {rows:4d}: fp32 {fp32:7.1f}  bf16 {bf16:7.1f} GFLOP/s  bf16/fp32 "
              f"{bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
