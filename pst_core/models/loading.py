"""Loading a peer: its model and tokenizer, and the inference backend its config asks for.

The protocol (:mod:`pst_core.models.backend`) stays free of implementations; this module picks
one and applies the peer's latest checkpoint (:mod:`pst_core.models.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

from pst_core.models.backend import Backend
from pst_core.models.checkpoint import is_adapter
from pst_core.models.source import load_model


def load_backend(peer, checkpoint: Path | None = None) -> Backend:
    """The backend a :class:`~pst_core.config.PeerConfig` asks for, with its model loaded.

    ``checkpoint`` is the peer's latest training output (LoRA adapters or a full model), if any.
    """
    if peer.backend == "vllm":
        from pst_core.models.vllm import VLLMBackend

        return VLLMBackend.from_config(peer, checkpoint)
    from pst_core.models.hf import TransformersBackend

    return TransformersBackend.from_config(peer, checkpoint)


def load_peer_model(peer, checkpoint: Path | None = None):
    """A peer's model and tokenizer: its source, plus the latest checkpoint when there is one.

    A checkpoint is LoRA adapters or a full fine-tuned model directory. Adapters are merged into
    the weights: unmerged LoRA made generation on the CPU about 1.5x slower (Qwen-0.5B eval
    179 s -> 266 s in the demo), for a difference of one bf16 rounding of the merged weights.
    """
    field = f"peers[{peer.name}].device"
    if checkpoint is not None and not is_adapter(checkpoint):
        return load_model(str(checkpoint), dtype=peer.dtype, device=peer.device,
                          device_field=field)
    model, tokenizer = load_model(
        peer.source, revision=peer.revision, dtype=peer.dtype, device=peer.device,
        trust_remote_code=peer.trust_remote_code, device_field=field,
    )
    if checkpoint is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint).merge_and_unload().eval()
    return model, tokenizer
