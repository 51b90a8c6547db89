"""Datasets: the benchmark registry, loaders (Hub, local files, synthetic) and ingestion.

Every source becomes one table with ``DATASET_SCHEMA`` (id, question, answer, all_answers,
source, split), written by ``pst ingest`` to ``data/<name>.parquet``.
"""

from pst_core.data.ingest import DATASET_SCHEMA, IngestReport, ingest_dataset, select_split

__all__ = ["DATASET_SCHEMA", "IngestReport", "ingest_dataset", "select_split"]
