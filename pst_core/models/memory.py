"""Memory: how many rows generation can decode at once, and running out of GPU memory as a
one-line user error that names the setting to lower.

On a CPU a decode step reads every weight once whatever the number of rows, and skinny matrix
products run far below the machine's peak (Qwen-0.5B's MLP at 16 rows: about a third of the
FLOP/s it reaches at 256): the more rows per step, the more tokens per second, up to what the KV
cache leaves room for. ``batch_size: auto`` takes that many.

``torch.cuda.OutOfMemoryError`` inside generation, scoring or training becomes a
:class:`~pst_core.errors.ModelError` (the CLI prints it as ``error: ...`` without a traceback):
the fix is nearly always a smaller batch, which the message names with its current value.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pst_core.errors import ModelError

MEMORY_SHARE = 0.3  # of the available memory, for the KV cache and logits of one cohort
MAX_ROWS = {"cpu": 256, "cuda": 512}


def rows_that_fit(model, row_tokens: int) -> int:
    """Rows of ``row_tokens`` tokens (prompt + new) whose KV cache and logits fit in
    ``MEMORY_SHARE`` of the memory available now on the model's device, at most ``MAX_ROWS``."""
    param = next(model.parameters())
    per_row = row_bytes(model.config.get_text_config(), row_tokens, param.element_size())
    device = param.device.type
    rows = int(MEMORY_SHARE * available_bytes(param.device) // per_row)
    return max(1, min(rows, MAX_ROWS.get(device, MAX_ROWS["cpu"])))


def release_memory() -> None:
    """Give freed memory back to the system: collect garbage, empty CUDA's cache, and ask glibc
    to return its free heap (``malloc_trim``). Without the trim a process that had closed a
    Qwen-0.5B backend kept 3.3 GB resident (0.6 GB after it), so every later stage's peak
    started that much higher."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
TRAIN_MMAP_THRESHOLD = 1 << 20  # bytes
DEFAULT_MMAP_THRESHOLD_MAX = 32 << 20  # where glibc's own threshold ends up (64-bit)


@contextmanager
def unmapped_large_blocks() -> Iterator[None]:
    """While training, glibc serves every allocation of 1 MiB or more by its own mapping, which
    goes back to the system when it is freed.

    By default glibc raises this threshold (up to 32 MiB) whenever a mapped block is freed, so
    the tensors of a training step (a layer's activations, a chunk of logits: 1-30 MB each) soon
    come from the heap, and the heap keeps what they leave behind: a LoRA round at Qwen-0.5B's
    shape in fp32 (micro-batches of 2 x 700 tokens, checkpointing on) peaked 6.8 GiB above the
    loaded model, 0.9 GiB with this threshold, for 1.12x the wall time
    (bench/bench_train_memory.py). Decoding pays more for fresh mappings (1.13-1.2x its time)
    and keeps less in the heap, so on exit the threshold is 32 MiB, where glibc's own would be.
    The setting is process-wide: steps run at once in threads share it. A no-op off glibc.
    """
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, TRAIN_MMAP_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD_MAX)


@functools.cache
def _glibc():
    """The C library when it is glibc (``malloc_trim``, ``mallopt``), else None (macOS, musl)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def row_bytes(text_config, row_tokens: int, element_size: int) -> int:
    """Memory one decoded row takes: its KV cache over ``row_tokens`` tokens, plus the logits,
    probabilities and sorted probabilities of one step (fp32)."""
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    kv_per_token = (2 * text_config.num_hidden_layers
                    * (getattr(text_config, "num_key_value_heads", None) or heads)
                    * head_dim * element_size)
    return kv_per_token * row_tokens + 3 * 4 * text_config.vocab_size


def available_bytes(device) -> int:
    """Memory free for new allocations on ``device``: CUDA's free memory, else the system's
    MemAvailable (Linux), psutil's estimate, or 4 GiB when neither can be read."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return 4 * 2**30


@contextmanager
def out_of_memory_as_error(peer: str, stage: str, setting: str, batch_size: int,
                           hint: str = "") -> Iterator[None]:
    """Turn a CUDA out-of-memory error in the block into a ModelError naming ``setting``.

    Args:
        peer: the peer's name.
        stage: what ran out (``generation``, ``scoring``, ``training``).
        setting: the config field to lower (``peers[qwen].batch_size``).
        batch_size: its current value.
        hint: a further remedy, appended to the message.
    """
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ModelError(
            f"peer {peer!r} ran out of GPU memory in {stage} at batch size {batch_size}: "
            f"lower {setting} (now {batch_size}){hint}"
        ) from None
