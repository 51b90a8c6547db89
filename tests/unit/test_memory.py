"""GPU memory: an out-of-memory error in generation, scoring or training is one line naming the
peer and the batch size to lower (simulated: the real code paths with the model's forward
raising torch.cuda.OutOfMemoryError), gradient checkpointing by model size, and freed blocks
going back to the system."""

import pytest
import torch

from pst_core.config import TrainConfig
from pst_core.errors import ModelError
from pst_core.models.backend import SamplingParams
from pst_core.models.hf import TransformersBackend
from pst_core.models.memory import MAX_ROWS, _glibc, rows_that_fit
from pst_core.models.source import load_model
from pst_core.train import add_adapters, train_peer, uses_gradient_checkpointing


def _out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture()
def oom_backend(tiny_llama_dir):
    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    backend = TransformersBackend(model, tokenizer, name="qwen", batch_size=8)
    model.model.forward = _out_of_memory  # the decoder stack, under generate and scoring
    return backend


def test_generation_out_of_memory_names_peer_and_batch_size(oom_backend):
    with pytest.raises(ModelError) as e:
        oom_backend.generate(["How many apples?"], SamplingParams(max_new_tokens=4))
    message = str(e.value)
    assert message == ("peer 'qwen' ran out of GPU memory in generation at batch size 8: lower "
                       "peers[qwen].batch_size (now 8) or its max_new_tokens")
    assert e.value.__cause__ is None and "\n" not in message


def test_scoring_out_of_memory_names_peer_and_batch_size(oom_backend):
    with pytest.raises(ModelError, match=r"^peer 'qwen' ran out of GPU memory in scoring at "
                                         r"batch size 8: lower peers\[qwen\]\.batch_size"):
        oom_backend.score(["How many apples?"], [" 3"])


def test_training_out_of_memory_names_train_batch_size(tiny_llama_dir):
    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    cfg = TrainConfig(batch_size=2, gradient_accumulation_steps=1, lora_r=4)
    model = add_adapters(model, cfg, None, seed=0)
    model.base_model.model.model.forward = _out_of_memory
    with pytest.raises(ModelError, match=r"^peer 'llama' ran out of GPU memory in training at "
                                         r"batch size 2: lower train\.batch_size \(now 2\); "
                                         r"raise train\.gradient_accumulation_steps"):
        train_peer(model, tokenizer, ["Q? "], ["The answer is 1."], [1.0], cfg, peer="llama",
                   seed=0)


def test_gradient_checkpointing_auto_by_parameter_count(tiny_llama_dir, monkeypatch):
    import pst_core.train as training

    model, _ = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    assert TrainConfig().gradient_checkpointing is None
    assert not uses_gradient_checkpointing(model, TrainConfig())  # tiny: off, as before
    assert uses_gradient_checkpointing(model, TrainConfig(gradient_checkpointing=True))
    monkeypatch.setattr(training, "CHECKPOINTING_ABOVE", 1000)  # the tiny model is "large"
    assert uses_gradient_checkpointing(model, TrainConfig())
    assert not uses_gradient_checkpointing(model, TrainConfig(gradient_checkpointing=False))


def test_gradient_checkpointing_auto_by_activation_memory(tiny_llama_dir, monkeypatch):
    """Below 1B parameters auto still recomputes when a micro-batch's activations would take
    over a quarter of the free memory (the demo's Qwen-0.5B step: 12 GB of them)."""
    model, _ = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    monkeypatch.setattr("pst_core.train.available_bytes", lambda device: 2**30)
    assert not uses_gradient_checkpointing(model, TrainConfig(), batch_tokens=1000)
    assert uses_gradient_checkpointing(model, TrainConfig(), batch_tokens=10_000_000)
    assert not uses_gradient_checkpointing(model, TrainConfig(gradient_checkpointing=False),
                                           batch_tokens=10_000_000)


def test_auto_gradient_checkpointing_trains_and_switches_off_after(tiny_llama_dir, monkeypatch):
    import pst_core.train as training

    monkeypatch.setattr(training, "CHECKPOINTING_ABOVE", 1000)
    model, tokenizer = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    cfg = TrainConfig(batch_size=1, gradient_accumulation_steps=1, lora_r=4, num_epochs=1)
    model = add_adapters(model, cfg, None, seed=0)
    seen = []
    original = model.base_model.model.model.forward

    def spy(*args, **kwargs):
        seen.append(model.base_model.model.is_gradient_checkpointing)
        return original(*args, **kwargs)

    model.base_model.model.model.forward = spy
    log = train_peer(model, tokenizer, ["Q? "], ["The answer is 1."], [1.0], cfg, peer="t", seed=0)
    assert log.num_rows == 1 and seen and all(seen)
    assert not model.base_model.model.is_gradient_checkpointing


def test_rows_that_fit_follow_free_memory(tiny_llama_dir, monkeypatch):
    """Rows under ``batch_size: auto``: the KV cache of the longest row times the rows stays
    within the memory share; never 0, never above the cap."""
    model, _ = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    free = {"bytes": 2**30}
    monkeypatch.setattr("pst_core.models.memory.available_bytes", lambda device: free["bytes"])
    assert rows_that_fit(model, 500) == MAX_ROWS["cpu"]  # tiny model, 1 GiB: the cap
    free["bytes"] = 10 * 2**20
    short, long = rows_that_fit(model, 100), rows_that_fit(model, 1000)
    assert 1 <= long < short < MAX_ROWS["cpu"]
    free["bytes"] = 0
    assert rows_that_fit(model, 1000) == 1


_MAPPED_BLOCKS_PROBE = """
import ctypes, torch
from pst_core.models.memory import _glibc, unmapped_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]

libc = _glibc()
libc.mallinfo2.restype = MallInfo2

def mapped_blocks_for_3mb_tensors():
    torch.empty(20 << 20, dtype=torch.uint8)  # freed at once: raises the dynamic threshold
    before = libc.mallinfo2().hblks
    tensors = [torch.empty(3 << 20, dtype=torch.uint8) for _ in range(4)]
    mapped = libc.mallinfo2().hblks - before
    del tensors
    return mapped

with unmapped_large_blocks():
    inside = mapped_blocks_for_3mb_tensors()
print(inside, mapped_blocks_for_3mb_tensors())
"""


def test_training_makes_freed_megabyte_tensors_go_back_to_the_system():
    """After a 20 MB block is freed glibc serves 3 MB tensors from its heap, which keeps what
    they leave (6.8 GiB in bench_train_memory); while training each is its own mapping.

    A fresh interpreter: the threshold only decides how *new* memory is got, so free heap
    chunks left by earlier tests would serve the tensors either way."""
    import subprocess
    import sys

    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):  # mallinfo2: glibc >= 2.33
        pytest.skip("not glibc >= 2.33")
    probe = subprocess.run([sys.executable, "-c", _MAPPED_BLOCKS_PROBE], capture_output=True,
                           text=True, check=True)
    inside, outside = map(int, probe.stdout.split())
    assert inside == 4
    assert outside == 0  # decoding reuses its heap: fresh maps cost
