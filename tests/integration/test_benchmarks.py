"""The benchmark copies in data/benchmarks: they load, split, and their golds are read and
matched as the answer rules intend."""

from pst_core.answers import extract_answer, is_equivalent, matches_gold
from pst_core.config import DatasetConfig
from pst_core.data import ingest_dataset
from pst_core.data.ingest import normalize_question
from pst_core.schemas import DATASET_SCHEMA
from tests.helpers import benchmark_path, read_benchmark


def test_gsm8k_rationales_extract_to_their_gold():
    rows = read_benchmark("gsm8k")
    for row in rows:
        got = extract_answer(row["meta"]["solution"]).answer
        assert is_equivalent(got, row["answer"]), (row["id"], got, row["answer"])


def test_math500_boxed_solutions_match_their_latex_gold():
    rows = read_benchmark("math500")
    hits = [is_equivalent(extract_answer(r["meta"]["solution"]).answer, r["answer"]) for r in rows]
    # Every MATH-500 solution boxes its answer; equivalence must see through LaTeX spelling.
    assert sum(hits) / len(hits) >= 0.97, sum(hits)


def test_addsub_float_noise_golds():
    rows = [r for r in read_benchmark("addsub") if len(r["answer"]) > 10]
    assert rows, "AddSub has float-noise golds such as 0.6666666666666666"
    for row in rows:
        value = float(row["answer"])
        assert is_equivalent(f"{value:.2f}", row["answer"])
        assert not is_equivalent(f"{value + 0.5:.2f}", row["answer"])


def test_simuleq_multi_answer_golds():
    row = next(r for r in read_benchmark("simuleq") if r["id"] == "simuleq-2598")
    gold, all_answers = row["answer"], row["meta"]["all_answers"]
    assert (gold, all_answers) == ("15", ["15", "9"])
    assert matches_gold("9", gold, all_answers, multi_answer="any")
    assert not matches_gold("9", gold, all_answers, multi_answer="first")
    assert not matches_gold("24", gold, all_answers)


def test_multiarith_local_copy():
    table, report = ingest_dataset(
        DatasetConfig(name="multiarith", benchmark="multiarith", path=str(benchmark_path("multiarith")))
    )
    assert table.schema == DATASET_SCHEMA
    assert report.n_rows == 600 and report.n_train + report.n_eval == 600
    assert 0.2 < report.n_eval / 600 < 0.4
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == "multiarith-0" and first["answer"] == "39"


def test_duplicate_questions_never_straddle_the_split():
    table, _ = ingest_dataset(
        DatasetConfig(name="m", benchmark="multiarith", path=str(benchmark_path("multiarith")))
    )
    by_question: dict[str, set] = {}
    for row in table.to_pylist():
        by_question.setdefault(normalize_question(row["question"]), set()).add(row["split"])
    duplicated = [q for q in by_question if sum(
        normalize_question(r["question"]) == q for r in read_benchmark("multiarith")) > 1]
    assert len(duplicated) == 20  # SOURCES.md: 20 questions appear twice
    assert all(len(by_question[q]) == 1 for q in duplicated)


def test_simuleq_keeps_all_answers():
    table, _ = ingest_dataset(
        DatasetConfig(name="s", benchmark="simuleq", path=str(benchmark_path("simuleq")))
    )
    row = next(r for r in table.to_pylist() if r["id"] == "simuleq-2598")
    assert row["all_answers"] == ["15", "9"]
