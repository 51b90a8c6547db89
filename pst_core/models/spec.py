"""Which model a peer is and how it runs: source, prompt format, backend, dtype, device.

The section of each ``peers[]`` entry (``pst_core.config`` assembles it into the experiment
config); kept here so that code below the config (a fixed PMI scorer, ``pst generate``) can
build one without importing the whole experiment config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pst_core.section import NAME_MAX, NAME_PATTERN, Section


class PeerConfig(Section):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=NAME_MAX,
                      description="Short name used in tables and paths.")
    source: str = Field(
        ...,
        description="Model source: an offline packaged model (`pst models list`), a Hub id "
        "(org/name), a local model directory, or a .gguf file.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    prompt_format: Literal["auto", "chat", "fewshot"] = Field(
        "auto",
        description="chat: the model's chat template; fewshot: a plain few-shot prompt for base "
        "models; auto: chat when the tokenizer has a chat template.",
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="Inference backend (vllm needs a GPU and the gpu extra)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights dtype; auto: bf16 where it is faster than fp32 (CPUs with AMX, "
        "GPUs that support it), else fp32 on a CPU and float16 on a GPU."
    )
    quantize: Literal["none", "int8"] = Field(
        "none",
        description="int8: inference (generation, scoring, evaluation) with int8 weights and "
        "per-row int8 activations, CPU only: evaluation ran 1.9x fp32's tokens/s on a CPU with "
        "AVX-512 VNNI, 1.2x on AVX2 (slower than fp32 there below ~16 rows); ~1% error per "
        "layer, so answers differ from fp32's (docs/performance.md). Training keeps the loaded "
        "dtype.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where to run the model: auto (cuda when available), cpu, cuda, or cuda:N "
        "to place this peer on GPU N (transformers backend; peers on different GPUs train and "
        "evaluate at once under the dask task runner, README \"Scaling out\").",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="vLLM only: the share of the GPU's memory this peer's engine may take "
        "(weights, activations, KV cache); lower it when peers share a GPU or it runs out of "
        "memory at startup.",
    )
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Rows (prompts x samples) decoded at once, and prompts per scoring batch; "
        "auto: as many rows as 30% of the free memory holds (more rows, more tokens/s on "
        "a CPU too), scoring batches of 16. Lower it if other jobs need the memory.",
    )
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="This peer's token budget, overriding generation.max_new_tokens and "
        "eval.max_new_tokens (cut a weak model that rambles shorter).",
    )
    trust_remote_code: bool = Field(
        False, description="Allow Hub models to run their own code (off unless set)."
    )

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if value != "auto" and value <= 0:
            raise ValueError("should be a positive integer or auto")
        return value

    @model_validator(mode="after")
    def _vllm_places_itself(self) -> PeerConfig:
        if self.backend == "vllm" and self.device.startswith("cuda:"):
            raise ValueError(
                f"device {self.device!r} needs backend transformers: vLLM uses the GPUs in "
                "CUDA_VISIBLE_DEVICES (set it per worker), so give a vllm peer device auto or cuda"
            )
        return self
