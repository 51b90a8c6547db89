"""Ingestion: loaders, bad rows, the hash split, the synthetic generator."""

import json

import pyarrow as pa
import pytest

from pst_core.config import ColumnMap, DatasetConfig
from pst_core.data import ingest_dataset, select_split
from pst_core.data.ingest import assign_split
from pst_core.data.synthetic import generate_problems
from pst_core.errors import DataError


def _spec(path, **kw):
    return DatasetConfig(name="t", path=str(path), **kw)


def test_split_is_deterministic_and_text_normalized():
    q = "A pet store had 13 siamese cats.  How many?"
    assert assign_split(q, 0.3) == assign_split(q.upper().replace("  ", " "), 0.3)
    splits = [assign_split(f"question {i}", 0.3) for i in range(2000)]
    assert 0.26 < splits.count("eval") / 2000 < 0.34


def test_select_split_and_limit():
    table, report = ingest_dataset(DatasetConfig(name="s", benchmark="synthetic"))
    assert select_split(table, "eval").num_rows == report.n_eval
    assert select_split(table, "train", limit=5).num_rows == 5
    assert select_split(table, "all").num_rows == report.n_rows


def test_synthetic_is_deterministic_with_computed_golds():
    a, b, c = generate_problems(50, seed=1), generate_problems(50, seed=1), generate_problems(50, seed=2)
    assert a == b and a != c
    assert len({r.question.split(" ")[0] for r in a}) > 3  # several templates and names
    for row in a:
        assert int(row.answer) >= 0


def test_synthetic_gold_is_right():
    row = generate_problems(1, seed=0)[0]
    # "Noah shares 36 apples equally among 4 children. Then each child gets 7 more apples."
    assert row.question.startswith("Noah shares 36 apples equally among 4 children")
    assert row.answer == str(36 // 4 + 7)


def test_csv_with_column_mapping(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('problem,sol,key\n"What is 2+3?",5.0,a\n"What is 4, plus 4?",8,b\n', encoding="utf-8")
    table, _ = ingest_dataset(_spec(path, columns=ColumnMap(question="problem", answer="sol", id="key")))
    assert table.to_pylist()[0] | {"split": None} == {
        "id": "a", "question": "What is 2+3?", "answer": "5", "all_answers": None,
        "source": str(path), "split": None,
    }
    assert table.column("question").to_pylist()[1] == "What is 4, plus 4?"


def test_json_and_parquet(tmp_path):
    import pyarrow.parquet as pq

    records = [{"question": "Q1?", "answer": 1}, {"question": "Q2?", "answer": 2.0}]
    (tmp_path / "q.json").write_text(json.dumps(records), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "q.parquet")
    for name in ("q.json", "q.parquet"):
        table, _ = ingest_dataset(_spec(tmp_path / name))
        assert table.column("answer").to_pylist() == ["1", "2"]
        assert table.column("id").to_pylist() == ["t-0", "t-1"]
    # a file with gold answers has one on every row: a null is a mistake, not unlabeled
    records[1]["answer"] = None
    (tmp_path / "null.json").write_text(json.dumps(records), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "null.parquet")
    for name, where in (("null.json", "item 1"), ("null.parquet", "row 1")):
        with pytest.raises(DataError, match=rf"{name}:{where}: empty or missing gold answer"):
            ingest_dataset(_spec(tmp_path / name))


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "ok?", "answer": "1"}\n{"question": "oops"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:line 2: invalid JSON"):
        ingest_dataset(_spec(path))


def test_skip_bad_counts_each_reason(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [b'{"question": "ok?", "answer": "1"}', b'{"question": ', b'{"question": "  "}',
             b'{"question": "caf\xe9?"}', b'{"question": "fine?", "answer": "2"}',
             b'{"question": "no gold?"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match="line 3: empty or missing question|line 2: invalid JSON"):
        ingest_dataset(_spec(path))
    table, report = ingest_dataset(_spec(path), skip_bad=True)
    assert table.column("question").to_pylist() == ["ok?", "fine?"]
    assert sum(report.skipped.values()) == 4
    assert any("missing gold answer" in reason for reason in report.skipped)
    assert any("UTF-8" in reason for reason in report.skipped)
    assert report.first_skipped[next(r for r in report.skipped if "UTF-8" in r)].endswith("line 4")


def test_csv_without_question_column(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("prompt,answer\nWhat?,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"q\.csv: no column 'question' \(columns: prompt, answer\)"):
        ingest_dataset(_spec(path))


def test_non_utf8_csv_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,answer\nok?,1\ncaf\xe9?,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv:line 3: not valid UTF-8"):
        ingest_dataset(_spec(path))
    table, report = ingest_dataset(_spec(path), skip_bad=True)
    assert table.num_rows == 1 and sum(report.skipped.values()) == 1


def test_duplicate_ids_rejected(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "question": "x?"}\n{"id": "a", "question": "y?"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="id 'a' appears in rows 0 and 1"):
        ingest_dataset(_spec(path, columns=ColumnMap(id="id")))


def test_unknown_benchmark():
    with pytest.raises(DataError, match="unknown benchmark 'multiarth'; known:"):
        ingest_dataset(DatasetConfig(name="x", benchmark="multiarth"))
