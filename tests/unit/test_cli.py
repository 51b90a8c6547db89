"""The pst command: bad input gives one line on stderr, a non-zero exit, and no partial file."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


def pst(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr  # one line; log lines (INFO/WARNING) may precede it
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_help_lists_commands():
    out = pst("--help").stdout
    for command in ("ingest", "generate", "validate", "models"):
        assert command in out


def test_help_into_closed_pipe_exits_without_traceback():
    """`pst --help | head -1`: the reader is gone before the help is written; typer exits,
    pst adds no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "--help"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # closed before the child has imported typer: its write fails
    stderr = proc.stderr.read()
    proc.wait()
    assert "Traceback" not in stderr, stderr


def test_ingest_broken_jsonl(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"question": "a?", "answer": "1"}\n{"question": \n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = pst("ingest", src, "--out", out)
    assert_one_line_error(result, "broken.jsonl:line 2: invalid JSON", "--skip-bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jsonl"]


def test_ingest_skip_bad_reports_counts(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"question": "a?", "answer": "1"}\n{"question": \n'
                   '{"question": "b?", "answer": "2"}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = pst("ingest", src, "--out", out, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 row(s): invalid JSON" in result.stdout
    assert pq.read_table(out).num_rows == 2


def test_ingest_csv_without_question_column(tmp_path):
    src = tmp_path / "q.csv"
    src.write_text("prompt,answer\nwhat?,1\n", encoding="utf-8")
    result = pst("ingest", src, "--out", tmp_path / "out.parquet")
    assert_one_line_error(result, "q.csv: no column 'question'")
    assert not (tmp_path / "out.parquet").exists()


def test_generate_unknown_model(tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "2+2?"}\n', encoding="utf-8")
    result = pst("generate", src, "--model", "no-such-model", "--out", tmp_path / "r.parquet")
    assert_one_line_error(result, "unknown model 'no-such-model'")
    assert not (tmp_path / "r.parquet").exists()


def test_generate_corrupted_gguf(tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "2+2?"}\n', encoding="utf-8")
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF not really")
    result = pst("generate", src, "--model", bad, "--out", tmp_path / "r.parquet",
                 env={"PST_CACHE_DIR": str(tmp_path / "cache")})
    assert_one_line_error(result, "model.gguf: not a loadable GGUF model")
    assert not (tmp_path / "r.parquet").exists()


def test_models_fetch_unknown_name():
    assert_one_line_error(pst("models", "fetch", "gpt-5"), "unknown offline model 'gpt-5'")


def test_models_list_shows_licenses():
    out = pst("models", "list").stdout
    assert "Apache-2.0" in out and "Gemma" in out


def test_validate(tmp_path):
    assert pst("validate", "data/configs/demo.yaml").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ndata: {pool: {name: p, benchmark: synthetic}}\npeers: []\n")
    assert_one_line_error(pst("validate", bad), "bad.yaml: peers: List should have at least 1 item")


@pytest.mark.parametrize(("args", "fragments"), [
    (["--dtype", "float64"],
     ["--dtype: Input should be 'auto', 'bfloat16', 'float16' or 'float32' (got 'float64')"]),
    (["--n", "0"], ["--n: Input should be greater than or equal to 1 (got 0)"]),
    (["--quantize", "int4"], ["--quantize: Input should be 'none' or 'int8' (got 'int4')"]),
    (["--temperature", "-1"], ["--temperature: Input should be greater than or equal to 0"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens: Input should be greater than 0 (got 0)"]),
    (["batch_size=0"], ["batch_size: should be a positive integer or auto (got 0)"]),
    (["bogus=1"], ["bogus: unknown field"]),
    (["batch_size"], ["'batch_size': expected a peer field as key=value"]),
    (["--split", "test", "--n", "0", "dtype=fp8"],  # every bad option at once
     ["--split: Input should be 'train', 'eval' or 'all'", "--n: Input should be",
      "dtype: Input should be"]),
])
def test_generate_rejects_bad_options_in_one_line(tmp_path, args, fragments):
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "2+2?", "answer": "4"}\n', encoding="utf-8")
    result = pst("generate", src, "--model", "no-such-model", "--out", tmp_path / "r.parquet",
                 *args)
    assert_one_line_error(result, *fragments)  # before the model is looked up
    assert not (tmp_path / "r.parquet").exists()


def test_ingest_rejects_eval_fraction_out_of_range(tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "2+2?", "answer": "4"}\n', encoding="utf-8")
    result = pst("ingest", src, "--eval-fraction", "1.5", "--out", tmp_path / "out.parquet")
    assert_one_line_error(result, "--eval-fraction: Input should be less than 1 (got 1.5)")
    assert not (tmp_path / "out.parquet").exists()


def test_generate_takes_peer_fields_as_key_value(tmp_path, tiny_llama_dir):
    src = tmp_path / "q.jsonl"
    src.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n',
                   encoding="utf-8")
    out = tmp_path / "r.parquet"
    result = pst("generate", src, "-m", tiny_llama_dir, "--out", out, "--max-new-tokens", "64",
                 "max_new_tokens=3", "batch_size=1", "dtype=float32")
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 and all(r["n_tokens"] <= 3 for r in rows)  # key=value wins


def test_models_list_never_cuts_or_splits_a_word():
    """At 80 columns through a pipe: every name, description and license whole on its line."""
    from pst_core.models.offline import OFFLINE_MODELS

    result = pst("models", "list", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for m in OFFLINE_MODELS.values():
        assert any(line.startswith(f"{m.name} ") for line in result.stdout.splitlines())
        assert f"{m.name}: {m.description}; license: {m.license}" in result.stdout


def test_every_command_summary_is_one_line():
    """`pst --help` lists each command by its docstring's first paragraph: one line, so the
    listing never breaks a sentence where the source wrapped it."""
    from flows.cli import app, models_app

    for group in (app, models_app):
        for command in group.registered_commands:
            summary = (command.callback.__doc__ or "").strip().split("\n\n")[0]
            assert summary and "\n" not in summary, command.callback.__name__


def test_run_without_prefect_says_which_extra_to_install():
    """The base install has no Prefect (vLLM environments cannot have it): one line, no traceback."""
    code = ("import sys; sys.modules['prefect'] = None; "
            "sys.argv = ['pst', 'run', 'data/configs/demo.yaml']; "
            "from flows.cli import app; app()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert_one_line_error(result, "Prefect is not installed", "'.[flows]'", "--no-prefect")
