"""Where a dataset comes from: a registry benchmark, a local file, or the synthetic generator.

The sections of ``data.pool`` and ``data.eval[]`` (``pst_core.config`` assembles them into the
experiment config); kept here, beside the loaders that read them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pst_core.section import NAME_MAX, NAME_PATTERN, Section


class ColumnMap(Section):
    """Where the fields of a local data file live (dotted paths reach into nested JSON)."""

    question: str | list[str] = Field(
        "question", description="Column holding the question text; a list is joined with spaces."
    )
    answer: str | None = Field(
        "answer", description="Column holding the gold answer (null for unlabeled data)."
    )
    id: str | None = Field(None, description="Column holding a stable row id; default: row number.")
    all_answers: str | None = Field(
        None, description="Column holding a list of every accepted gold answer (e.g. SimulEq)."
    )


class SyntheticConfig(Section):
    n: int = Field(300, gt=0, description="Number of generated two-step word problems.")
    seed: int = Field(0, description="Seed of the problem generator (same seed, same problems).")


class DatasetConfig(Section):
    name: str = Field(
        ..., pattern=NAME_PATTERN, max_length=NAME_MAX,
        description="Name of the dataset; its table is data/<name>.parquet."
    )
    benchmark: str | None = Field(
        None,
        description="Registry benchmark (multiarith, simuleq, math500, gsm8k, addsub, singleeq, "
        "svamp) or 'synthetic'. Without `path` a registry benchmark is loaded from the Hub.",
    )
    path: str | None = Field(
        None, description="Local JSONL / JSON / CSV / Parquet file to read instead of the Hub."
    )
    columns: ColumnMap | None = Field(
        None, description="Column mapping for `path`; default: the benchmark's, else ColumnMap()."
    )
    split: Literal["train", "eval", "all"] | None = Field(
        None,
        description="Which rows this dataset contributes: train, eval or all; default: train "
        "for the pool, eval for data.eval[].",
    )
    eval_fraction: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Share of questions put in the eval split when the source has no split "
        "(by hash of the normalized question, so duplicates never straddle it).",
    )
    limit: int | None = Field(
        None, gt=0, description="Keep only the first N rows of the chosen split (after splitting)."
    )
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="Options when benchmark is 'synthetic'."
    )

    @model_validator(mode="after")
    def _has_source(self) -> DatasetConfig:
        if self.benchmark is None and self.path is None:
            raise ValueError("set `benchmark` (a registry name or 'synthetic') or `path`")
        return self
