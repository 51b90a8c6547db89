"""Parquet store: schemas checked, writes atomic, complete stages skipped."""

from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pst_core.errors import StoreError
from pst_core.store import RunLayout, cached_stage, read_table, write_table

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("x", pa.float64())])


def test_roundtrip_and_cast(tmp_path):
    path = tmp_path / "a" / "t.parquet"
    write_table(pa.table({"x": [1, 2], "id": ["a", "b"], "extra": [0, 0]}), path, SCHEMA)
    table = read_table(path, SCHEMA)
    assert table.schema == SCHEMA and table.column("x").to_pylist() == [1.0, 2.0]


def test_schema_violations_name_file_and_column(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(StoreError, match=r"t\.parquet: missing column\(s\) x"):
        write_table(pa.table({"id": ["a"]}), path, SCHEMA)
    with pytest.raises(StoreError, match="column 'id' has 1 null"):
        write_table(pa.table({"id": [None], "x": [1.0]}), path, SCHEMA)
    assert not path.exists()
    pq.write_table(pa.table({"id": ["a"], "x": ["not a number"]}), path)
    with pytest.raises(StoreError, match="column 'x' is string, expected double"):
        read_table(path, SCHEMA)


def test_crash_during_write_leaves_no_file(tmp_path):
    path = tmp_path / "t.parquet"
    with mock.patch("pst_core.store.pq.write_table", side_effect=OSError("disk full")):
        with pytest.raises(OSError, match="disk full"):
            write_table(pa.table({"id": ["a"], "x": [1.0]}), path, SCHEMA)
    assert list(tmp_path.iterdir()) == []


def test_crash_during_rewrite_keeps_the_old_table(tmp_path):
    path = tmp_path / "t.parquet"
    write_table(pa.table({"id": ["old"], "x": [1.0]}), path, SCHEMA)
    with mock.patch("pst_core.store.os.replace", side_effect=OSError("power cut")):
        with pytest.raises(OSError):
            write_table(pa.table({"id": ["new"], "x": [2.0]}), path, SCHEMA)
    assert read_table(path, SCHEMA).column("id").to_pylist() == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_cached_stage_skips_complete_output(tmp_path):
    path = tmp_path / "t.parquet"
    calls = []

    def compute():
        calls.append(1)
        return pa.table({"id": ["a"], "x": [1.0]})

    first = cached_stage(path, SCHEMA, compute)
    second = cached_stage(path, SCHEMA, compute)
    assert calls == [1] and first.equals(second)


def test_corrupt_parquet_is_reported(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(StoreError, match="not a readable Parquet file"):
        read_table(path, SCHEMA)


def test_run_layout_matches_design():
    layout = RunLayout.for_run("runs", "demo", "r1")
    assert str(layout.responses(1)) == "runs/demo/r1/round_1/responses.parquet"
    assert str(layout.checkpoint(2, "qwen")) == "runs/demo/r1/round_2/checkpoints/qwen"
    assert str(layout.dataset("gsm8k")) == "runs/demo/r1/data/gsm8k.parquet"
