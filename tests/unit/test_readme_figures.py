"""README's demo figure and docs/performance.md's table of figures per CPU kind say what
docs/performance-figures.csv says: both are generated from it (bench/bench_demo.py --render),
and each row's CPU kind follows from the flags it was measured with."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench_demo():
    spec = importlib.util.spec_from_file_location("bench_demo", ROOT / "bench" / "bench_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_and_performance_md_are_generated_from_the_figures():
    bench = bench_demo()
    rows = bench.read_rows()
    readme = (ROOT / "README.md").read_text()
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert f"{bench.README_START}\n{bench.readme_sentence(rows)}\n{bench.README_END}" in readme
    assert f"{bench.TABLE_START}\n{bench.table(rows)}\n{bench.TABLE_END}" in performance


def test_each_row_is_a_measurement_on_a_named_cpu_kind():
    bench = bench_demo()
    for row in bench.read_rows():
        assert set(row) == set(bench.COLUMNS)
        held = row["cpu_kind"] == bench.HELD and "held to AVX2" in row["note"]
        assert held or row["cpu_kind"] == bench.cpu_kind(row["flags"]), row
        assert row["dtype"] in ("bf16", "fp32") and int(row["cores"]) > 0
        assert row["demo_s"] or row["unit_tier_s"] or row["all_tiers_s"], row


def test_the_readme_sentence_gives_the_latest_figures_and_the_factor_per_other_kind():
    """Other kinds' factors compare the same demo config (the AMX fp32 row ran another)."""
    bench = bench_demo()
    base = dict.fromkeys(bench.COLUMNS, "") | {"date": "2026-01-01", "cores": "2"}
    rows = [base | {"cpu_kind": "AMX", "dtype": "bf16", "demo_s": "300", "demo_peak_gib": "3"},
            base | {"cpu_kind": "AVX2", "dtype": "fp32", "demo_s": "1200", "demo_peak_gib": "8"},
            base | {"cpu_kind": "AVX-512", "dtype": "fp32", "unit_tier_s": "60",
                    "all_tiers_s": "900"},
            base | {"cpu_kind": "AMX", "dtype": "fp32", "demo_s": "100", "demo_config": "older"},
            base | {"cpu_kind": "AVX-512", "dtype": "bf16", "demo_s": "600", "demo_peak_gib": "5"}]
    assert bench.readme_sentence(rows) == (
        "`pst demo` took 10 min 00 s and peaked at 5.0 GiB on its last measurement (2026-01-01, "
        "2 cores, AVX-512, bf16); the tests there: the unit tier 60 s and every tier 15 min 00 s; "
        "on the other CPU kinds measured it took: AMX in bf16 0.50x as long, AVX2 in fp32 2.00x "
        "as long.")
    assert bench.cpu_kind("avx2 avx512f avx512_bf16") == "AVX-512"
    assert bench.cpu_kind("avx2") == "AVX2" and bench.cpu_kind("avx512f amx_bf16") == "AMX"
