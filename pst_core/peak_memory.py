"""A step's peak resident memory (RSS), which the runner records beside its wall time.

Which stage needs the memory (loading a peer, training, evaluating in batches) decides what
machine a run fits on, and the process's peak alone cannot say which. On Linux the kernel's
high-water mark is reset before the step (``reset_peak``: "5" to /proc/self/clear_refs,
Linux >= 4.0) and read after it (``peak_gib``: VmHWM in /proc/self/status). Where it cannot
be reset (no /proc, as on macOS; a kernel or sandbox that refuses the write), the reading is
the process's peak so far, not the step's: a step after a bigger one reports the bigger one's.

One process has one high-water mark: steps that run at once in threads of one process
(``--parallel`` on Prefect's thread runner) each report the process's peak since the latest of
their starts. The Dask runner runs one step per process.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def reset_peak() -> bool:
    """Reset the process's high-water mark to its current RSS; False where that is impossible
    (then ``peak_gib`` gives the process's peak so far)."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_gib() -> float:
    """The process's peak RSS in GiB since the last ``reset_peak`` (or since it started)."""
    peak = _status_gib("VmHWM:")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**30 if sys.platform == "darwin" else peak * 1024 / 2**30


def rss_gib() -> float | None:
    """The process's RSS now, in GiB; None without /proc."""
    return _status_gib("VmRSS:")


def _status_gib(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024 / 2**30  # the kernel's "kB" are KiB
    except OSError:
        pass
    return None
