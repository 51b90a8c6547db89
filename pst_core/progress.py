"""Progress of long stages: a rich bar on a terminal; elsewhere (nohup, Prefect, CI logs) an
INFO line at most once a minute, so an hour-long evaluation visibly advances."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a transient bar on stderr when it is a terminal, else logs."""
    if not sys.stderr.isatty():
        start = last = time.monotonic()
        done = 0

        def advance(n: int = 1) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if now - last >= LOG_EVERY_S:
                last = now
                log.info("%s: %d/%d after %.0f s", description, done, total, now - start)

        yield advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
