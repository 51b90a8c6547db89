"""The checkpoint format: what training writes and how loaders tell its two kinds apart.

A checkpoint directory holds either LoRA adapters (``adapter_config.json``; the tokenizer is the
base model's) or a full fine-tuned model with its tokenizer (``config.json``), as safetensors.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from pst_core.store import disk_full

_ADAPTER_CONFIG = "adapter_config.json"
# save_checkpoint's temporary directory: ``.<peer>.<8 random chars of mkdtemp>`` beside the
# checkpoint (peer names never start with a dot, so no checkpoint is named like one).
_TEMP_DIR = re.compile(r"^\..+\.[a-z0-9_]{8}$")


def save_checkpoint(model, tokenizer, out_dir: Path) -> Path:
    """Save adapters (LoRA) or the whole model and its tokenizer (full) as safetensors,
    atomically (dir rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if not is_adapter(tmp):  # a full model; adapters reuse the base's tokenizer
            tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except OSError as e:
        raise disk_full(out_dir, e) or e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def remove_stale_checkpoints(root: Path) -> list[Path]:
    """Delete the temporary directories ``save_checkpoint`` left in the ``checkpoints/``
    folders under ``root`` when its process was killed mid-save; return them.

    Call it only while no other process saves under ``root`` (a run's start).
    """
    stale = sorted(p for p in Path(root).rglob("checkpoints/.*")
                   if p.is_dir() and p.parent.name == "checkpoints" and _TEMP_DIR.match(p.name))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def is_checkpoint(path: Path) -> bool:
    """A complete checkpoint: LoRA adapters or a full model (only complete ones are renamed in)."""
    return is_adapter(path) or (path / "config.json").exists()


def is_adapter(path: Path) -> bool:
    """Whether ``path`` holds LoRA adapters (to apply to the peer's source) not a full model."""
    return (path / _ADAPTER_CONFIG).exists()


def adapter_rank(path: Path) -> int:
    """The LoRA rank ``r`` of the adapters at ``path`` (vLLM must be told the largest rank)."""
    return int(json.loads((path / _ADAPTER_CONFIG).read_text())["r"])
