"""Where and how a run was made: one record per invocation, so a comparison can state the
exact command, the machine and the library versions behind every number.

A run may be made in parts (every stage resumes), possibly on different machines, so each
invocation writes its own small file ``invocations/<time>-<pid>.json`` atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

from pst_core.store import atomic_path


def machine() -> dict:
    """CPU, cores, memory, GPU and the versions of the libraries that shape the numbers."""
    info = {"platform": platform.platform(), "cpu": cpu_name(), "cpu_flags": cpu_flags(),
            "cores": os.cpu_count(), "memory_gib": _memory_gib(),
            "python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "vllm"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def record_invocation(run_root: Path, argv: list[str] | None = None) -> Path:
    """Write this process's command line, start time and machine under ``run_root``."""
    now = dt.datetime.now(dt.UTC)
    argv = sys.argv if argv is None else argv
    program = Path(argv[0]).name if argv else "python"
    record = {"started": now.isoformat(timespec="seconds"),
              "command": shlex.join([program, *argv[1:]]), "cwd": os.getcwd(),
              "machine": machine()}
    path = run_root / "invocations" / f"{now:%Y%m%dT%H%M%S}-{os.getpid()}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path


def invocations(run_root: Path) -> list[dict]:
    """A run's invocation records, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((run_root / "invocations").glob("*.json"))]


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpuinfo_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's instruction-set flags as /proc/cpuinfo lists them; None where it is unreadable
    (not Linux)."""
    try:
        info = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return set(next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                     if ln.startswith("flags")), []))


def cpu_flags() -> str:
    """The CPU's instruction-set flags that decide CPU speed here (fp32 matmul width, native
    bf16), space-separated; empty where /proc/cpuinfo is unreadable. The same session's machine
    changes between AVX2-only and AMX, so a wall time means nothing without them."""
    flags = cpuinfo_flags() or set()
    return " ".join(f for f in SPEED_FLAGS if f in flags)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
