"""Model sources: an offline packaged model, a GGUF file, a local directory, or a Hub id.

GGUF weights are quantized; transformers dequantizes them on every load (17-50 s here). The
first load therefore saves a bf16 safetensors copy under ``<cache>/converted/<sha256[:16]>/``,
keyed by the GGUF's content hash, and later loads read that copy in about a second.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pst_core.errors import HubUnavailable, ModelError
from pst_core.models.offline import (
    OFFLINE_MODELS,
    cache_dir,
    fetch_offline_model,
    get_offline_model,
    sha256_file,
)

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. ``kind`` is offline, gguf, local or hub."""

    kind: Literal["offline", "gguf", "local", "hub"]
    location: str
    revision: str | None = None


def resolve_source(source: str, revision: str | None = None) -> ModelSource:
    """Classify a source string; fail with a message listing what it could have been.

    Raises:
        ModelError: the source is none of the four kinds, or a named file is missing.
    """
    if source in OFFLINE_MODELS:
        return ModelSource("offline", source)
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"{source}: no such GGUF file")
        return ModelSource("gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{source}: directory has no config.json (not a transformers model)")
        return ModelSource("local", str(path.resolve()))
    if _HUB_ID.match(source) and not path.exists():
        return ModelSource("hub", source, revision)
    raise ModelError(
        f"unknown model {source!r}: not an offline model ({', '.join(OFFLINE_MODELS)}), "
        f"a .gguf file, a model directory, or a Hub id like org/name"
    )


def check_source(source: str, revision: str | None = None) -> ModelSource:
    """``resolve_source``, and a GGUF file's magic bytes: what can be known without loading.

    Cheap (a name lookup, a few file checks, 4 bytes read; no Hub access: a Hub id is only
    checked for its ``org/name`` shape), so configs and ``pst generate`` check sources up front.

    Raises:
        ModelError: as ``resolve_source``, or a .gguf file that does not start with ``GGUF``.
    """
    resolved = resolve_source(source, revision)
    if resolved.kind == "gguf":
        with open(resolved.location, "rb") as f:
            magic = f.read(4)
        if magic != _GGUF_MAGIC:
            raise ModelError(
                f"{source}: not a loadable GGUF model (it starts with {magic!r}, not GGUF's magic "
                f"bytes {_GGUF_MAGIC!r}: truncated, or another format renamed); download it again")
    if resolved.kind == "local":
        check_model_dir(Path(resolved.location), source)
    return resolved


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def check_model_dir(path: Path, source: str) -> None:
    """A model directory has a tokenizer and whole weights: every safetensors file as long as
    its header says (a cut download fails here, not minutes later in ``from_pretrained``).

    Raises:
        ModelError: what is missing or cut, naming the file.
    """
    import json
    import struct

    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(f"{source}: no tokenizer ({', '.join(_TOKENIZER_FILES)}) in the model "
                         "directory; save it beside the weights (tokenizer.save_pretrained)")
    shards = sorted(path.glob("*.safetensors"))
    if not shards and not list(path.glob("*.bin")):
        raise ModelError(f"{source}: no weights (*.safetensors or *.bin) in the model directory")
    for shard in shards:
        size = shard.stat().st_size
        with open(shard, "rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
            try:
                header = json.loads(f.read(length)) if length and length < size else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                header = None
        if header is None:
            raise ModelError(f"{shard}: not a readable safetensors file (its header is cut or "
                             "damaged); save or download the model again")
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
        if size < 8 + length + end:
            raise ModelError(f"{shard}: truncated ({size:,} bytes of {8 + length + end:,}); save "
                             "or download the model again")


def check_hub_model(repo: str, revision: str | None = None) -> None:
    """A Hub model is in the local cache or the Hub answers for it (within seconds), so that an
    offline machine fails before a run writes anything.

    Raises:
        HubUnavailable: neither, with the Hub's answer.
    """
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        return
    try:
        model_info(repo, revision=revision, timeout=10)
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, gated: all one answer
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubUnavailable(f"{repo}: not in the local Hugging Face cache and the Hub does "
                             f"not serve it ({reason}); use an offline model or a local "
                             "directory, or connect and log in (huggingface-cli login)") from None


def resolve_device(device: str, field: str = "device") -> str:
    """``auto`` -> cuda or cpu; ``cuda``/``cuda:N`` checked against the GPUs torch sees.

    Args:
        field: the config field to name in errors (``peers[qwen].device``).

    Raises:
        ModelError: no CUDA GPU, or no GPU with that index.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ModelError(f"{field} is {device!r}, but torch sees no CUDA GPU "
                             "(set it to auto or cpu)")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ModelError(f"{field} is {device!r}, but torch sees {count} CUDA GPU(s): "
                             f"use cuda:0..cuda:{count - 1}")
    return device


def resolve_dtype(dtype: str, device: str):
    """``auto``: bf16 where it is faster than fp32 (CPUs with AMX, recent GPUs), else fp32 on a
    CPU and fp16 on a GPU."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_prefers_bf16() else torch.float32


def cpu_prefers_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether bf16 matmuls beat fp32 on this CPU: where it has AMX tiles (``amx_bf16``).

    Measured in one run on 2 cores each (bench/bench_dtype.py, Qwen-0.5B's MLP shape): with AMX
    bf16 is the fast dtype; on an AVX-512 CPU with ``avx512_bf16`` but no AMX, bf16 ran at
    0.47-0.84x fp32's FLOP/s (the demo took 26 min in bf16 there); AVX-512 without
    ``avx512_bf16`` emulates it at about a quarter of fp32 (24 vs 94 GFLOP/s), and oneDNN's own
    check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) says yes there too. Where
    /proc/cpuinfo is unreadable (not Linux), oneDNN's answer is all there is.
    """
    from pst_core.provenance import cpuinfo_flags

    flags = cpuinfo_flags(cpuinfo)
    if flags is None:
        import torch

        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "amx_bf16" in flags


def model_directory(source: ModelSource) -> tuple[str, str | None]:
    """A ``from_pretrained`` location for the source (GGUFs are converted on first use)."""
    if source.kind == "offline":
        model = get_offline_model(source.location)
        gguf = fetch_offline_model(model.name)
        return str(_converted_copy(gguf, expected_sha256=model.sha256)), None
    if source.kind == "gguf":
        return str(_converted_copy(Path(source.location))), None
    return source.location, source.revision


def load_model(
    source: str,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    device_field: str = "device",
):
    """Load a causal LM and its tokenizer (left padding, a pad token) from any source.

    Returns:
        (model, tokenizer), the model in eval mode on the resolved device and dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_source(source, revision)
    location, rev = model_directory(resolved)
    device = resolve_device(device, device_field)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=rev, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            location, revision=rev, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except OSError as e:
        raise ModelError(f"{source}: could not load model: {str(e).splitlines()[0]}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def _converted_copy(gguf: Path, expected_sha256: str | None = None) -> Path:
    """The bf16 safetensors copy of a GGUF, made on first use, keyed by the GGUF's SHA-256."""
    digest = sha256_file(gguf)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(
            f"{gguf}: SHA-256 {digest[:16]}... does not match the recorded {expected_sha256[:16]}...; "
            f"the file is corrupted: run `pst models fetch <name> --force`"
        )
    target = cache_dir() / "converted" / digest[:16]
    if (target / "config.json").exists():
        return target
    log.info("converting %s to a bf16 safetensors copy (once; later loads are fast)", gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _dequantize_to(gguf, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process converted it meanwhile: keep theirs
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _dequantize_to(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # Dequantize in fp32 (transformers' fast path for GGUF), then store bf16.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as e:  # gguf raises ValueError, struct.error, KeyError... on a bad file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{gguf}: not a loadable GGUF model ({reason})") from None
    # save_pretrained refuses quantized models: detach the GGUF quantizer (weights are already
    # dequantized tensors); the copy reloads with identical logits (docs/decisions.md).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
