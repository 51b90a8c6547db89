"""Datasets: the benchmark registry, loaders (Hub, local files, synthetic) and ingestion.

Every source becomes one table with ``pst_core.schemas.DATASET_SCHEMA`` (id, question, answer,
all_answers, source, split), written by ``pst ingest`` to ``data/<name>.parquet``.
"""

from pst_core.data.ingest import IngestReport, ingest_dataset, select_split

__all__ = ["IngestReport", "ingest_dataset", "select_split"]
