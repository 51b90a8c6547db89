"""Parquet I/O with declared schemas, atomic writes, and the run layout (docs/architecture.md).

A stage's output is written to a temporary file in the same directory and renamed into place,
so a file that exists is complete: a crash leaves either the old state or the new one, never a
half-written table. That makes "the output exists" a sound test for "the stage is done".
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pst_core.errors import StoreError


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Select the schema's columns in order and cast to its types; refuse missing columns/nulls.

    Raises:
        StoreError: naming ``where`` (a file or stage) and the offending column.
    """
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise StoreError(
            f"{where}: missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(table.column_names)})"
        )
    columns = []
    for field in schema:
        column = table.column(field.name)
        if not field.nullable and column.null_count:
            raise StoreError(f"{where}: column {field.name!r} has {column.null_count} null(s)")
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise StoreError(
                f"{where}: column {field.name!r} is {column.type}, expected {field.type}: {e}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema) -> Path:
    """Check ``table`` against ``schema`` and write it to ``path`` atomically."""
    path = Path(path)
    table = conform(table, schema, str(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_table(path: str | Path, schema: pa.Schema) -> pa.Table:
    """Read a Parquet file and check it against ``schema`` (extra columns are dropped)."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file (did the stage that writes it run?)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise StoreError(f"{path}: not a readable Parquet file: {e}") from None
    return conform(table, schema, str(path))


def check_output_file(path: str | Path, label: str) -> Path:
    """Refuse a path a file cannot be written to, before any work is done for it.

    ``label`` is what the user typed it as (``--out``). Refused: an existing directory, a path
    below a regular file (its parent cannot be created), and one whose nearest existing
    directory this user may not write to (root may write anywhere).

    Raises:
        StoreError: naming ``label``, the path and what to give instead.
    """
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{label} {path}: is a directory; give a file path, e.g. "
                         f"{path / 'out.parquet'}")
    check_output_dir(path.parent, label, of=path)
    return path


def check_output_dir(path: str | Path, label: str, of: Path | None = None) -> Path:
    """Refuse a directory path that exists as a file, lies below one (``mkdir`` would fail), or
    lies in a directory this user may not write to.

    Raises:
        StoreError: naming ``label`` (``--out``, ``output_dir``) and the file in the way.
    """
    path = Path(path)
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise StoreError(
                    f"{label} {of or path}: {ancestor} is a file, not a directory; choose a path "
                    f"in a directory (or move the file)")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise StoreError(f"{label} {of or path}: no permission to write in {ancestor}; "
                                 f"choose a directory you can write to")
            break
    return path


# atomic_path's temporary files: ``.<name>.<8 random chars of mkstemp>.tmp`` beside the target.
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(root: str | Path) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left under ``root`` when its process was
    killed (SIGKILL, power loss: its ``finally`` never ran); return them.

    Only files named like ``atomic_path``'s are touched. A live write would lose its temporary
    too, so call this only while no other process writes under ``root`` (a run's start,
    ``Runner.setup``).
    """
    root = Path(root)
    stale = sorted(p for p in root.rglob(".*.tmp") if p.is_file() and _TEMP_FILE.match(p.name))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds.

    Raises:
        StoreError: ``path`` is a directory, or its directory cannot be created or written to
            (a file in the way, no permission).
    """
    if path.is_dir():
        raise StoreError(f"{path}: is a directory; cannot write a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StoreError(f"{path}: cannot write there ({e.strerror}); choose a path in a "
                         f"directory you can write to") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise disk_full(path, e) or e
    finally:
        tmp.unlink(missing_ok=True)


def disk_full(path: Path, error: OSError) -> StoreError | None:
    """A one-line error for ``error`` if it is a full disk (pyarrow's carry the errno only in
    their text), naming ``path`` and the space left; None for any other error."""
    if error.errno != errno.ENOSPC and "No space left on device" not in str(error):
        return None
    where = next(p for p in (path, *path.parents) if p.exists())
    free = shutil.disk_usage(where).free / 2**30
    return StoreError(f"{path}: no space left on the device ({free:.2f} GiB free there); free "
                      "some and run the same command again: finished steps are kept")


def cached_stage(path: str | Path, schema: pa.Schema, compute: Callable[[], pa.Table]) -> pa.Table:
    """Return the stage's table from ``path`` if it is complete, else compute and store it."""
    path = Path(path)
    if path.exists():
        return read_table(path, schema)
    table = compute()
    write_table(table, path, schema)
    return conform(table, schema, str(path))


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` while a process runs the run: a second process on the same run
    directory refuses at once (two would delete each other's temporaries and write the same
    tables). The lock is the kernel's (``flock``), so a killed process releases it.

    Raises:
        StoreError: another process holds it (its pid is named).
    """
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held until the end
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StoreError(f"{root}: {holder} is running this run already; wait for it to end "
                         "(or stop it), then run the same command to resume") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_unlocked(root: Path) -> None:
    """Refuse (``StoreError``) if another process holds ``root``'s run lock; takes nothing."""
    if (root / ".lock").is_file():
        with run_lock(root):
            pass


@dataclass(frozen=True)
class RunLayout:
    """Where a run's artifacts live: ``<output_dir>/<experiment>/<run>/`` (docs/architecture.md)."""

    root: Path

    @classmethod
    def for_run(cls, output_dir: str | Path, experiment: str, run: str) -> RunLayout:
        return cls(Path(output_dir) / experiment / run)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def dataset(self, name: str) -> Path:
        return self.root / "data" / f"{name}.parquet"

    def round_dir(self, round_index: int) -> Path:
        return self.root / f"round_{round_index}"

    def table(self, round_index: int, name: str) -> Path:
        """A round's table by name (``responses``, ``eval``, ...)."""
        return self.round_dir(round_index) / f"{name}.parquet"

    def part(self, round_index: int, name: str) -> Path:
        """A per-peer (or per-turn) piece of a round's tables, collected into the round's file."""
        return self.round_dir(round_index) / "parts" / f"{name}.parquet"

    def timings(self, round_index: int) -> Path:
        """The directory of the round's step timings (one JSON file per step that ran)."""
        return self.round_dir(round_index) / "timings"

    def rounds_with(self, name: str) -> list[tuple[int, Path]]:
        """(round, path) of every round that has written table ``name``, in round order."""
        found = [(int(p.parent.name.removeprefix("round_")), p)
                 for p in self.root.glob(f"round_*/{name}.parquet")]
        return sorted(found)

    def questions(self, round_index: int) -> Path:
        return self.table(round_index, "questions")

    def peers(self, round_index: int) -> Path:
        return self.table(round_index, "peers")

    def rejected(self, round_index: int) -> Path:
        return self.table(round_index, "rejected")

    def consistency(self, round_index: int) -> Path:
        return self.table(round_index, "consistency")

    def responses(self, round_index: int) -> Path:
        return self.table(round_index, "responses")

    def aggregates(self, round_index: int) -> Path:
        return self.table(round_index, "aggregates")

    def pmi(self, round_index: int) -> Path:
        return self.table(round_index, "pmi")

    def targets(self, round_index: int) -> Path:
        return self.table(round_index, "targets")

    def checkpoint(self, round_index: int, peer: str) -> Path:
        return self.round_dir(round_index) / "checkpoints" / peer

    def train_log(self, round_index: int) -> Path:
        return self.table(round_index, "train_log")

    def eval(self, round_index: int) -> Path:
        return self.table(round_index, "eval")

    def metrics(self, round_index: int) -> Path:
        return self.table(round_index, "metrics")
