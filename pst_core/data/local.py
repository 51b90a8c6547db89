"""Read question/answer rows from local JSONL, JSON, CSV and Parquet files.

Every bad row (unreadable line, non-UTF-8 bytes, missing or empty question, a question that is
not text, a gold answer that is a list) is an error naming the file, the line and the reason,
unless the caller asked to skip bad rows; then each skipped row is counted by reason, so nothing
disappears silently. Values are never stringified blindly: a NaN is missing, not the text
"nan", and a JSON object is not its Python repr. A UTF-8 byte order mark (Excel's "CSV UTF-8")
is read as such, and a CSV header naming a column twice is refused (``csv`` would keep the last).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pst_core.answers import NUMBER, normalize_number
from pst_core.data.spec import ColumnMap
from pst_core.errors import DataError

log = logging.getLogger(__name__)

# A CSV field may hold a long question; csv's default limit is 128 KiB.
csv.field_size_limit(16 * 2**20)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".parquet": "parquet"}


@dataclass(frozen=True)
class Row:
    """One question, as every loader yields it."""

    id: str
    question: str
    answer: str | None
    all_answers: list[str] | None
    split: str | None = None


@dataclass
class Skips:
    """Rows dropped under ``skip_bad``, counted by reason, with the first location of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class BadRow(Exception):
    """A row that cannot be used; its message is the reason."""


def read_rows(
    path: str | Path, columns: ColumnMap, source: str, skip_bad: bool, skips: Skips
) -> list[Row]:
    """Read a local file into rows with ``columns``; bad rows raise or are skipped into ``skips``.

    Raises:
        DataError: ``<file>:<line>: <reason>`` for the first bad row (when not skipping), or a
            file-level problem (missing file, unknown format, a mapped column that is absent).
    """
    path = Path(path)
    records = _records(path)
    rows: list[Row] = []
    labelled: bool | None = None  # the first record decides: a file has gold answers or not
    for where, record in records:
        try:
            if isinstance(record, BadRow):
                raise record
            if labelled is None:
                _check_columns(path, record, columns)
                labelled = _has_gold_column(record, columns)
            rows.append(map_record(record, columns, default_id=f"{source}-{len(rows)}",
                                   needs_gold=labelled))
        except BadRow as e:
            if not skip_bad:
                raise DataError(f"{path}:{where}: {e} (pass --skip-bad to skip such rows)") from None
            skips.add(str(e), f"{path}:{where}")
    return rows


def check_file(path: str | Path, columns: ColumnMap, needs_gold: bool = False) -> None:
    """Check a data file without reading it whole: it exists, has a known format, and its
    first record has the mapped columns, the gold answer's too when ``needs_gold`` (an
    evaluation set); ``pst validate``, a run's start.

    Raises:
        DataError: the same file-level message ``read_rows`` would give later.
    """
    path = Path(path)
    for where, record in _records(path):
        if isinstance(record, BadRow):
            raise DataError(f"{path}:{where}: {record}")
        _check_columns(path, record, columns, warn=False)
        if needs_gold and not _has_gold_column(record, columns):
            raise DataError(f"{path}: no gold answers (column {columns.answer!r}): an evaluation "
                            "set needs them (map them with columns.answer or columns.all_answers)")
        return


def _has_gold_column(record: dict[str, Any], columns: ColumnMap) -> bool:
    return any(c and _get(record, c, _MISSING) is not _MISSING
               for c in (columns.answer, columns.all_answers))


def map_record(record: dict[str, Any], columns: ColumnMap, default_id: str,
               needs_gold: bool = False) -> Row:
    """Turn one source record into a :class:`Row` using the column mapping.

    Args:
        needs_gold: the row must have a gold answer (its file has them: a row without one is a
            mistake, not an unlabeled question).

    Raises:
        BadRow: no question text; a question, id or gold answer of the wrong kind (a number or
            a JSON object as the question, a list, a boolean or a non-finite number as the gold
            answer); no gold answer where ``needs_gold``.
    """
    question_cols = [columns.question] if isinstance(columns.question, str) else columns.question
    parts = [_question_text(_get(record, c), c) for c in question_cols]
    question = " ".join(p for p in parts if p)
    if not question:
        raise BadRow(f"empty or missing question (column {'+'.join(question_cols)})")
    answer = _answer_text(_get(record, columns.answer), columns.answer) if columns.answer else None
    all_answers = None
    if columns.all_answers:
        raw = _get(record, columns.all_answers)
        if not _is_missing(raw):
            values = raw if isinstance(raw, (list, tuple)) else [raw]
            all_answers = [a for a in (_answer_text(v, columns.all_answers, item=True)
                                       for v in values) if a is not None] or None
    if needs_gold and answer is None and all_answers is None:
        raise BadRow(f"empty or missing gold answer (column {columns.answer!r}) in a file whose "
                     "rows have one; fix the row, or drop the column to read the file unlabeled")
    row_id = _get(record, columns.id) if columns.id else None
    if isinstance(row_id, (dict, list, tuple)):
        raise BadRow(f"id (column {columns.id!r}) is {_kind(row_id)}, not a single value")
    return Row(
        id=str(row_id) if not _is_missing(row_id) else default_id,
        question=question,
        answer=answer,
        all_answers=all_answers,
    )


def _is_missing(value: Any) -> bool:
    """None, or a float NaN (JSON ``NaN``, a null in a float column of Parquet or pandas)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _question_text(value: Any, column: str) -> str | None:
    """A question part's text; None when missing. Anything but a string is refused: str() of a
    number or an object is not the question the data meant."""
    if _is_missing(value):
        return None
    if not isinstance(value, str):
        hint = (f" (point columns.question at its text, e.g. {column}.{next(iter(value))})"
                if isinstance(value, dict) and value else "")
        raise BadRow(f"question (column {column!r}) is {_kind(value)} ({_shown(value)}), not "
                     f"text{hint}")
    return value.strip() or None


def _check_columns(path: Path, record: dict[str, Any], columns: ColumnMap,
                   warn: bool = True) -> None:
    """Fail once, at file level, when a mapped column is absent from the first record."""
    wanted = [columns.question] if isinstance(columns.question, str) else list(columns.question)
    wanted += [c for c in (columns.id,) if c]
    if warn and columns.answer and _get(record, columns.answer, _MISSING) is _MISSING:
        log.warning("%s: no column %r: the data is read as unlabeled", path, columns.answer)
    for column in wanted:
        if _get(record, column, _MISSING) is _MISSING:
            have = ", ".join(record) or "none"
            raise DataError(
                f"{path}: no column {column!r} (columns: {have}); set the dataset's `columns` "
                f"mapping (e.g. columns.question=<name>)"
            )


_MISSING = object()


def _get(record: dict[str, Any], dotted: str, default: Any = None) -> Any:
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def _answer_text(value: Any, column: str, item: bool = False) -> str | None:
    """Gold answers as strings: numbers canonical (``5.0`` -> ``5``), text stripped, empty and
    NaN -> None. A list or object is refused: its text (``[1]``) could never match an answer,
    and whether a list means "any of these" is for the mapping to say (``columns.all_answers``).
    """
    if _is_missing(value):
        return None
    if isinstance(value, (dict, list, tuple)):
        raise BadRow(f"{_gold(column, item)} is {_kind(value)} ({_shown(value)}), not a single "
                     f"value; map a "
                     f"list of accepted answers with columns.all_answers (and columns.answer "
                     f"to one value, or null)")
    if isinstance(value, bool):
        raise BadRow(f"{_gold(column, item)} is a boolean ({value}), not a number or text")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadRow(f"{_gold(column, item)} is not a finite number ({value})")
        return normalize_number(repr(value))
    text = str(value).strip()
    if re.fullmatch(NUMBER, text):
        return normalize_number(text)
    return text or None


def _gold(column: str, item: bool) -> str:
    return f"an item of all_answers (column {column!r})" if item else f"answer (column {column!r})"


def _records(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    """A file's records (lazily for JSONL and CSV), each with where it is (``line 3``)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else
                        f"{path}: not a file; give a data file (.jsonl, .json, .csv, .parquet)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}[fmt](path)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | BadRow]]:
    """The file's lines as text; the first without a UTF-8 byte order mark (an Excel export)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield lineno, BadRow(f"not valid UTF-8 (byte {e.start})")


def _jsonl(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    for lineno, line in _decoded_lines(path):
        if isinstance(line, BadRow):
            yield f"line {lineno}", line
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield f"line {lineno}", BadRow(f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        except RecursionError:
            yield f"line {lineno}", BadRow("JSON nested too deeply to read")
            continue
        if not isinstance(record, dict):
            yield f"line {lineno}", BadRow(f"expected a JSON object, got {type(record).__name__}")
            continue
        yield f"line {lineno}", record


def _json(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:line {e.lineno}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects (or {{'data': [...]}})")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            yield f"item {index}", BadRow(f"expected a JSON object, got {type(record).__name__}")
        else:
            yield f"item {index}", record


def _csv(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    undecodable: list[tuple[int, BadRow]] = []

    def lines() -> Iterator[str]:
        for lineno, line in _decoded_lines(path):
            if isinstance(line, BadRow):
                undecodable.append((lineno, line))
                line = "\n"  # keep csv's line numbers those of the file; DictReader skips blanks
            yield line

    reader = csv.DictReader(lines())
    try:
        header = reader.fieldnames or []
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(
                f"{path}:line 1: column(s) {', '.join(map(repr, repeated))} appear more than once "
                f"in the header (only the last would be read); rename or remove the duplicates")
        for record in reader:
            while undecodable:
                lineno, bad = undecodable.pop(0)
                yield f"line {lineno}", bad
            yield f"line {reader.line_num}", _csv_record(record, len(header))
    except csv.Error as e:
        raise DataError(f"{path}:line {reader.line_num}: unreadable CSV ({e})") from None
    for lineno, bad in undecodable:
        yield f"line {lineno}", bad


def _csv_record(record: dict, width: int) -> dict | BadRow:
    """A CSV row as a record; one with more or fewer fields than the header is refused (an
    unquoted comma would otherwise shift or cut the gold answer silently)."""
    extra, absent = record.get(None) or [], sum(v is None for k, v in record.items() if k)
    if extra or absent:
        fields = width + len(extra) - absent
        return BadRow(f"{fields} field(s) where the header has {width}"
                      + ("; quote values that contain a comma" if extra else ""))
    return record


def _parquet(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        index = 0
        for batch in batches:
            for record in batch.to_pylist():
                yield f"row {index}", record
                index += 1
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
