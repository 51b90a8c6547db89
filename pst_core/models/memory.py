"""Running out of GPU memory as a one-line user error that names the setting to lower.

``torch.cuda.OutOfMemoryError`` inside generation, scoring or training becomes a
:class:`~pst_core.errors.ModelError` (the CLI prints it as ``error: ...`` without a traceback):
the fix is nearly always a smaller batch, which the message names with its current value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pst_core.errors import ModelError


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
