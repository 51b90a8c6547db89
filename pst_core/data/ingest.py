"""Ingestion: any dataset source -> one table with a declared schema and a train/eval split.

Sources are a registry benchmark (from the Hub, or from a local copy in the project's
normalized JSONL format), any local JSONL/JSON/CSV/Parquet file with a column mapping, or the
built-in synthetic problems. Sources without their own split get a deterministic one by hash of
the normalized question text, so duplicate questions (MultiArith has 20 pairs) land on the same
side and a question never appears in both training and evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pst_core.data.local import Row, Skips, check_file, map_record, read_rows
from pst_core.data.registry import Benchmark, get_benchmark
from pst_core.data.spec import ColumnMap, DatasetConfig
from pst_core.data.synthetic import generate_problems
from pst_core.errors import DataError, HubUnavailable
from pst_core.schemas import DATASET_SCHEMA

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class IngestReport:
    """What ingestion kept and dropped (dropped only under ``skip_bad``), by reason."""

    n_rows: int
    n_train: int
    n_eval: int
    skipped: dict[str, int]
    first_skipped: dict[str, str]


def ingest_dataset(spec: DatasetConfig, skip_bad: bool = False) -> tuple[pa.Table, IngestReport]:
    """Load the dataset ``spec`` describes into a ``DATASET_SCHEMA`` table (all splits).

    Raises:
        DataError: a bad row (file and line), a missing column, duplicate ids, an unknown
            benchmark, or an empty result.
    """
    skips = Skips()
    source = spec.benchmark or spec.path or spec.name
    if spec.benchmark == "synthetic":
        rows = generate_problems(spec.synthetic.n, spec.synthetic.seed)
        source = "synthetic"
    elif spec.path is not None:
        columns = spec.columns or _default_columns(spec.benchmark)
        rows = read_rows(spec.path, columns, spec.benchmark or spec.name, skip_bad, skips)
    else:
        benchmark = get_benchmark(spec.benchmark)
        rows = load_hub_rows(benchmark, skip_bad, skips)
    if not rows:
        raise DataError(f"dataset {spec.name!r} ({source}): no usable rows")
    _check_unique_ids(rows, spec.name)
    splits = [row.split or assign_split(row.question, spec.eval_fraction) for row in rows]
    table = pa.table(
        {
            "id": [r.id for r in rows],
            "question": [r.question for r in rows],
            "answer": [r.answer for r in rows],
            "all_answers": [r.all_answers for r in rows],
            "source": [source] * len(rows),
            "split": splits,
        },
        schema=DATASET_SCHEMA,
    )
    report = IngestReport(
        n_rows=len(rows),
        n_train=splits.count("train"),
        n_eval=splits.count("eval"),
        skipped=dict(skips.counts),
        first_skipped=dict(skips.examples),
    )
    if skips.total:
        log.warning("dataset %s: skipped %d bad row(s): %s", spec.name, skips.total, report.skipped)
    return table, report


def check_dataset(spec: DatasetConfig, role: str, split: str) -> None:
    """What can be checked before a run writes anything, without the Hub: a known benchmark; a
    local file that exists, has the mapped columns, gold answers where the dataset is an
    evaluation set, and rows that read; and, for local and synthetic data, a non-empty
    ``split``. (A local file is read whole: pools and benchmarks are small.)

    Args:
        role: how messages name the dataset (``data.pool``, ``evaluation set``).
        split: the split the run reads (``spec.split`` or its role's default).

    Raises:
        DataError: as ``ingest_dataset`` would, later.
    """
    if spec.benchmark not in (None, "synthetic"):
        benchmark = get_benchmark(spec.benchmark)
        if spec.path is None:
            check_hub_dataset(benchmark.hub_id, role, spec.name)
    if spec.path is not None:
        check_file(spec.path, spec.columns or _default_columns(spec.benchmark),
                   needs_gold=role != "data.pool")
    if spec.path is not None or spec.benchmark == "synthetic":
        check_split(ingest_dataset(spec)[0], spec, split, role)


def check_hub_dataset(hub_id: str, role: str, name: str) -> None:
    """A Hub dataset is in the local ``datasets`` cache or the Hub answers for it (within
    seconds): an offline machine fails before a run writes anything.

    Raises:
        HubUnavailable: neither, naming the local copies in ``data/benchmarks`` as the way out.
    """
    import datasets.config
    from huggingface_hub import dataset_info

    cached = Path(datasets.config.HF_DATASETS_CACHE) / hub_id.replace("/", "___")
    if cached.is_dir():
        return
    try:
        dataset_info(hub_id, timeout=10)
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, gated: all one answer
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubUnavailable(f"{role} {name!r} loads {hub_id} from the Hub, which does not "
                             f"answer ({reason}) and it is not cached; set its `path` to a local "
                             "copy (data/benchmarks/<benchmark>.jsonl)") from None


def check_split(table: pa.Table, spec: DatasetConfig, split: str, role: str) -> None:
    """Refuse a dataset whose chosen split is empty (a pool that could never be sampled, an
    evaluation of nothing), naming how to fix it.

    Raises:
        DataError: the dataset, its split and its size.
    """
    if split == "all" or select_split(table, split).num_rows:
        return
    raise DataError(f"{role} {spec.name!r}: no question in its {split} split ({table.num_rows} "
                    f"in all; eval_fraction {spec.eval_fraction} sends that share of questions "
                    "to the eval split, unless the source has its own)")


def select_split(table: pa.Table, split: str, limit: int | None = None) -> pa.Table:
    """Rows of one split (``all`` keeps both), in stored order, at most ``limit`` of them."""
    if split != "all":
        mask = pc.equal(table.column("split"), split)
        table = table.filter(mask)
    return table.slice(0, limit) if limit is not None else table


def normalize_question(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a question, for hashing."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip()


def assign_split(question: str, eval_fraction: float) -> str:
    """``eval`` for a stable ``eval_fraction`` share of questions, by hash of their text."""
    digest = hashlib.sha256(normalize_question(question).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < eval_fraction else "train"


def load_hub_rows(benchmark: Benchmark, skip_bad: bool, skips: Skips) -> list[Row]:
    """Load a registry benchmark from the Hugging Face Hub (needs internet or the HF cache)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise DataError("loading from the Hub needs the `datasets` package") from None
    try:
        dataset = datasets.load_dataset(benchmark.hub_id, benchmark.hub_config)
    except Exception as e:  # network, auth, missing config: all end here with the Hub's reason
        raise DataError(
            f"could not load {benchmark.hub_id!r} (config {benchmark.hub_config}) from the "
            f"Hub: {str(e).splitlines()[0]}; set the dataset's `path` to a local copy instead"
        ) from None
    rows = []
    for hub_split, our_split in benchmark.hub_splits.items():
        if hub_split not in dataset:
            continue
        for index, record in enumerate(dataset[hub_split]):
            if benchmark.hub_filter and record.get(benchmark.hub_filter[0]) != benchmark.hub_filter[1]:
                continue
            try:
                row = map_record(record, benchmark.hub_columns, f"{benchmark.name}-{hub_split}-{index}")
            except Exception as e:
                if not skip_bad:
                    raise DataError(f"{benchmark.hub_id}[{hub_split}] row {index}: {e}") from None
                skips.add(str(e), f"{benchmark.hub_id}[{hub_split}] row {index}")
                continue
            answer = _gsm8k_answer(row.answer) if benchmark.answer_format == "gsm8k" else row.answer
            rows.append(Row(row.id, row.question, answer, row.all_answers, our_split))
    if not rows:
        raise DataError(f"{benchmark.hub_id}: none of the splits {list(benchmark.hub_splits)} found")
    return rows


def _gsm8k_answer(solution: str | None) -> str | None:
    if solution is None or "####" not in solution:
        return solution
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def _default_columns(benchmark: str | None) -> ColumnMap:
    return get_benchmark(benchmark).local_columns if benchmark else ColumnMap()


def _check_unique_ids(rows: list[Row], name: str) -> None:
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.id in seen:
            raise DataError(
                f"dataset {name!r}: id {row.id!r} appears in rows {seen[row.id]} and {index}; "
                f"ids must be unique (map `columns.id` to a unique column, or leave it unset)"
            )
        seen[row.id] = index
