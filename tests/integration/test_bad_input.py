"""Every bad input is one `error:` line, through the real `pst` command, and writes nothing.

Each case runs ``python -m flows.cli`` in a subprocess on files made in a fresh directory, then
checks: the exit status (1, or 2 for usage errors), exactly one line starting with ``error:``
naming the culprit (option, field, file and row), no traceback, and the same directory listing
as before. The few cases of accepted input (a model given by its absolute or relative path, a
CSV or JSONL with a UTF-8 BOM) check instead that exactly the expected file appears.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pst_core.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
NAN = float("nan")


def _parquet(columns: dict):
    return lambda path: pq.write_table(pa.table(columns), path)


FILES = {
    "q.jsonl": '{"question": "2+2?", "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n',
    "nan.jsonl": '{"question": NaN, "answer": "4"}\n{"question": "3+3?", "answer": "6"}\n',
    "object.jsonl": '{"question": {"text": "2+2?"}, "answer": "4"}\n',
    "duplicate.csv": "question,answer,question\nA?,4,B?\n",
    "bom.csv": "\ufeffquestion,answer\nA?,4\n",
    "bom.jsonl": '\ufeff{"question": "A?", "answer": "4"}\n',
    "number.parquet": _parquet({"question": [1.5, 2.0], "answer": ["1", "2"]}),
    "nan.parquet": _parquet({"question": [NAN, 2.0], "answer": ["1", "2"]}),
    "list.parquet": _parquet({"question": ["A?", "B?"], "answer": [[1], [2, 3]]}),
    "comma-gold.csv": "question,answer\nHow many apples?,1,000\n",
    "comma-question.csv": "question,answer\nTom has 3, Ann has 4. How many?,7\n",
    "short-row.csv": "question,answer,id\nA?,4,a\nB?\n",
    "huge-field.csv": lambda path: path.write_text(
        'question,answer\n"' + "x" * (17 * 2**20) + '",4\n', encoding="utf-8"),
    "deep.jsonl": '{"question": "A?", "answer": ' + "[" * 100_000 + "\n",
    **{f"gold-{name}.jsonl": '{"question": "A?", "answer": "4"}\n{"question": "B?", "answer": '
       + value + "}\n" for name, value in [("empty", '""'), ("null", "null"),
                                            ("huge", "1e400"), ("infinity", "Infinity"),
                                            ("true", "true")]},
    "nogold.jsonl": '{"question": "A?"}\n{"question": "B?"}\n',
    "bomb.yaml": "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{x}: &{x} [{', '.join([f'*{y}'] * 9)}]\n" for y, x in zip("abcdefgh", "bcdefghi"))
        + "experiment: bomb\n",
    "deep.yaml": "experiment: " + "[" * 5000 + "\n",
    "big.yaml": "experiment: big\n" + "# padding\n" * 200_000,
    "listrun/config.yaml": "[1, 2]\n",
    "corruptrun/config.yaml": "experiment: [unclosed\n",
    "long.jsonl": '{"question": "' + "How many apples? " * 1500 + '", "answer": "4"}\n'
                  '{"question": "2+2?", "answer": "4"}\n',
    "bad.gguf": "not a gguf",
    "afile": "a regular file",
}


@dataclass
class Case:
    """``args`` are formatted with {tmp} (the case's directory), {model} (a tiny model dir)
    and {config} (a valid two-peer experiment YAML writing to {tmp}/runs)."""

    args: list[str]
    error: list[str] = field(default_factory=list)  # fragments of the one error line
    status: int = 1
    writes: str | None = None  # accepted input: the one file it must write (under {tmp})
    cwd: str = "{tmp}/cwd"
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    # pst ingest: options
    "ingest-eval-fraction": Case(["ingest", "{tmp}/q.jsonl", "--eval-fraction", "2"],
                                 ["--eval-fraction: Input should be less than 1 (got 2.0)"]),
    "ingest-name-path": Case(["ingest", "{tmp}/q.jsonl", "--name", "../evil"],
                             ["--name: String should match pattern", "'../evil'"]),
    "ingest-out-directory": Case(["ingest", "{tmp}/q.jsonl", "--out", "{tmp}/cwd"],
                                 ["--out", "/cwd: is a directory"]),
    "ingest-out-under-file": Case(["ingest", "{tmp}/q.jsonl", "--out", "{tmp}/afile/o.parquet"],
                                  ["--out", "afile is a file, not a directory"]),
    # pst ingest: rows accepted but wrong before
    "ingest-json-nan-question": Case(["ingest", "{tmp}/nan.jsonl", "--out", "{tmp}/o.parquet"],
                                     ["nan.jsonl:line 1: empty or missing question"]),
    "ingest-object-question": Case(
        ["ingest", "{tmp}/object.jsonl", "--out", "{tmp}/o.parquet"],
        ["object.jsonl:line 1: question (column 'question') is a JSON object", "question.text"]),
    "ingest-parquet-number-question": Case(
        ["ingest", "{tmp}/number.parquet", "--out", "{tmp}/o.parquet"],
        ["number.parquet:row 0: question (column 'question') is a number (1.5), not text"]),
    "ingest-parquet-nan-question": Case(
        ["ingest", "{tmp}/nan.parquet", "--out", "{tmp}/o.parquet"],
        ["nan.parquet:row 0: empty or missing question"]),
    "ingest-parquet-list-answer": Case(
        ["ingest", "{tmp}/list.parquet", "--out", "{tmp}/o.parquet"],
        ["list.parquet:row 0: answer (column 'answer') is a list ([1])", "columns.all_answers"]),
    "ingest-csv-duplicate-header": Case(
        ["ingest", "{tmp}/duplicate.csv", "--out", "{tmp}/o.parquet"],
        ["duplicate.csv:line 1: column(s) 'question' appear more than once in the header"]),
    "ingest-csv-bom": Case(["ingest", "{tmp}/bom.csv", "--out", "{tmp}/o.parquet"],
                           writes="o.parquet"),
    "ingest-jsonl-bom": Case(["ingest", "{tmp}/bom.jsonl", "--out", "{tmp}/o.parquet"],
                             writes="o.parquet"),
    # pst ingest: CSV rows whose fields do not match the header, huge fields, deep JSON
    "ingest-csv-comma-in-gold": Case(
        ["ingest", "{tmp}/comma-gold.csv", "--out", "{tmp}/o.parquet"],
        ["comma-gold.csv:line 2: 3 field(s) where the header has 2", "quote values"]),
    "ingest-csv-comma-in-question": Case(
        ["ingest", "{tmp}/comma-question.csv", "--out", "{tmp}/o.parquet"],
        ["comma-question.csv:line 2: 3 field(s) where the header has 2"]),
    "ingest-csv-short-row": Case(
        ["ingest", "{tmp}/short-row.csv", "--out", "{tmp}/o.parquet", "--id-col", "id"],
        ["short-row.csv:line 3: 1 field(s) where the header has 3"]),
    "ingest-csv-huge-field": Case(
        ["ingest", "{tmp}/huge-field.csv", "--out", "{tmp}/o.parquet"],
        ["huge-field.csv:line", "unreadable CSV", "field larger than field limit"]),
    "ingest-json-nested-deep": Case(
        ["ingest", "{tmp}/deep.jsonl", "--out", "{tmp}/o.parquet"],
        ["deep.jsonl:line 1: JSON nested too deeply"]),
    # gold answers in a file that has them: every row, finite, a number or text
    **{f"ingest-gold-{name}": Case(
        ["ingest", f"{{tmp}}/gold-{name}.jsonl", "--out", "{tmp}/o.parquet"],
        [f"gold-{name}.jsonl:line 2: ", message]) for name, message in [
            ("empty", "empty or missing gold answer (column 'answer')"),
            ("null", "empty or missing gold answer (column 'answer')"),
            ("huge", "answer (column 'answer') is not a finite number (inf)"),
            ("infinity", "answer (column 'answer') is not a finite number (inf)"),
            ("true", "answer (column 'answer') is a boolean (True)")]},
    "validate-eval-without-gold": Case(
        ["validate", "{config}", "data.eval=[{name: e, path: '{tmp}/nogold.jsonl'}]"],
        ["data.eval.0:", "nogold.jsonl: no gold answers (column 'answer')"]),
    "run-eval-gold-null": Case(
        ["run", "{config}", "data.eval=[{name: e, path: '{tmp}/gold-null.jsonl'}]",
         "--no-prefect", "--no-track"], ["data.eval.0:", "gold-null.jsonl:line 2: empty"]),
    "run-pool-without-train-split": Case(
        ["run", "{config}", "data.pool.split=train", "data.pool.eval_fraction=0.99",
         "--no-prefect", "--no-track"],
        ["data.pool: data.pool 'pool': no question in its train split (2 in all;",
         "eval_fraction 0.99"]),
    # pst generate: options (checked before the model loads)
    **{f"generate{option}{value}": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "{model}", "--out", "{tmp}/r.parquet", option, value],
        [f"{option}: {message}"]) for option, value, message in [
            ("--limit", "0", "Input should be greater than 0 (got 0)"),
            ("--limit", "-1", "Input should be greater than 0 (got -1)"),
            ("--prompt-format", "bogus", "Input should be 'auto', 'chat' or 'fewshot'"),
            ("--batch-size", "0", "should be a positive integer or auto (got 0)"),
            ("--split", "bogus", "Input should be 'train', 'eval' or 'all'"),
            ("--dtype", "bogus", "Input should be 'auto', 'bfloat16', 'float16' or 'float32'"),
            ("--max-new-tokens", "0", "Input should be greater than 0 (got 0)"),
            ("--n", "0", "Input should be greater than or equal to 1 (got 0)"),
            ("--temperature", "-1", "Input should be greater than or equal to 0 (got -1.0)"),
        ]},
    "generate-out-directory": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "{model}", "--out", "{tmp}/cwd"],
        ["--out", "/cwd: is a directory"]),
    "generate-out-under-file": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "{model}", "--out", "{tmp}/afile/r.parquet"],
        ["--out", "afile is a file, not a directory"]),
    "generate-not-gguf": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "{tmp}/bad.gguf", "--out", "{tmp}/r.parquet"],
        ["bad.gguf: not a loadable GGUF model", "magic bytes"]),
    "generate-model-absolute-dir": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "{model}", "--out", "{tmp}/r.parquet",
         "max_new_tokens=4", "dtype=float32"], writes="r.parquet"),
    "generate-model-relative-dir": Case(
        ["generate", "{tmp}/q.jsonl", "-m", "./model", "--out", "{tmp}/r.parquet",
         "max_new_tokens=4", "dtype=float32"], writes="r.parquet", cwd="{tmp}/cwd/.."),
    # configs: pst validate and pst run refuse them before anything is written
    "validate-output-dir-is-file": Case(["validate", "{config}", "output_dir={tmp}/afile"],
                                        ["output_dir: run directory", "afile is a file"]),
    "run-output-dir-is-file": Case(
        ["run", "{config}", "output_dir={tmp}/afile", "--no-prefect", "--no-track"],
        ["output_dir: run directory", "afile is a file"]),
    "validate-directory": Case(["validate", "{tmp}"], ["is a directory; give an experiment YAML"]),
    "validate-no-learners": Case(["validate", "{config}", "learners=[]"],
                                 ["learners: name at least one peer"]),
    "validate-infinite-rate": Case(["validate", "{config}", "train.learning_rate=.inf"],
                                   ["train.learning_rate: Input should be a finite number"]),
    "validate-nan-rate": Case(["validate", "{config}", "train.learning_rate=.nan"],
                              ["train.learning_rate: Input should be a finite number"]),
    "validate-repeated-dataset-name": Case(
        ["validate", "{config}",
         "data.eval=[{name: e, benchmark: synthetic}, {name: e, path: '{tmp}/q.jsonl'}]"],
        ["data: dataset names must be unique", "repeated: e"]),
    "validate-unknown-source": Case(["validate", "{config}", "peers.0.source=nosuch"],
                                    ["peers.0.source: unknown model 'nosuch'"]),
    "validate-not-gguf-source": Case(["validate", "{config}", "peers.1.source={tmp}/bad.gguf"],
                                     ["peers.1.source:", "not a loadable GGUF model"]),
    "validate-missing-pool-file": Case(["validate", "{config}", "data.pool.path={tmp}/no.jsonl"],
                                       ["data.pool:", "no.jsonl: no such file"]),
    "validate-missing-column": Case(["validate", "{config}", "data.pool.columns.question=prompt"],
                                    ["data.pool:", "no column 'prompt' (columns: question, answer)"]),
    "run-unknown-source": Case(
        ["run", "{config}", "peers.0.source=nosuch", "--no-prefect", "--no-track"],
        ["peers.0.source: unknown model 'nosuch'"]),
    # a run directory is resumed only under the config that made it
    **{f"{command}-stale-{field}": Case(
        [command, "{config}", "run=fixed", f"{field}={value}",
         *(["--no-prefect", "--no-track"] if command == "run" else [])],
        ["runs/bad/fixed was made with another config", change, "set another `run:` name"])
       for command in ("run", "validate") for field, value, change in [
           ("train.learning_rate", "0.5", "train.learning_rate 0.0001 -> 0.5"),
           ("peers.1.source", "smollm2-135m-instruct", "peers.1.source '"),
           ("seed", "3", "seed 0 -> 3")]},
    # names become file names: longer than a filesystem takes is a config error
    **{f"{command}-name-too-long": Case(
        [command, "{config}", "experiment=" + "x" * 300,
         *(["--no-prefect", "--no-track"] if command == "run" else [])],
        ["experiment: String should have at most 100 characters"])
       for command in ("run", "validate")},
    # what a run needs is there before it writes anything: whole model dirs, a GPU, the Hub
    "validate-model-without-tokenizer": Case(
        ["validate", "{config}", "peers.1.source={tmp}/notok"],
        ["peers.1.source:", "notok: no tokenizer (tokenizer.json, tokenizer.model, vocab.json)"]),
    "run-truncated-weights": Case(
        ["run", "{config}", "peers.1.source={tmp}/cut", "--no-prefect", "--no-track"],
        ["peers.1.source:", "cut/model.safetensors: truncated ("]),
    "run-cuda-without-gpu": Case(
        ["run", "{config}", "peers.0.device=cuda", "--no-prefect", "--no-track"],
        ["peers.0.device: peers.0.device is 'cuda', but torch sees no CUDA GPU"]),
    "run-hub-model-unavailable": Case(
        ["run", "{config}", "peers.0.source=pst-tests/no-such-model", "--no-prefect",
         "--no-track"],
        [("peers.0.source: pst-tests/no-such-model: not in the local Hugging Face cache and the "
          "Hub does not serve it")]),
    "run-hub-benchmark-offline": Case(
        ["run", "{config}", "data.eval=[{name: e, benchmark: gsm8k}]", "--no-prefect",
         "--no-track"],
        [("data.eval.0: evaluation set 'e' loads openai/gsm8k from the Hub, which does not "
          "answer")]),
    # a prompt past the model's context: refused, not recorded as a normal cut-off
    "run-prompt-past-context": Case(
        ["run", "{config}", "data.pool.path={tmp}/long.jsonl", "--no-prefect", "--no-track"],
        ["peers:", "long.jsonl: question 'pool-0': a ",
         "-token prompt plus 256 new tokens is past a's context of 1,024 tokens"]),
    "generate-prompt-past-context": Case(
        ["generate", "{tmp}/long.jsonl", "-m", "{model}", "--out", "{tmp}/r.parquet"],
        ["question 'long-0' (", "past", "context of 1,024 tokens"]),
    # an MLflow server that does not answer: seconds, not minutes of retries
    "run-mlflow-unreachable": Case(
        ["run", "{config}", "--no-prefect"],
        ["MLflow tracking URI http://127.0.0.1:9: no server answers", "--no-track"],
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    # configs of any size are read within bounds: aliases, nesting, bytes
    "validate-alias-bomb": Case(["validate", "{tmp}/bomb.yaml"],
                                ["bomb.yaml: more than 100,000 values", "YAML aliases"]),
    "run-alias-bomb": Case(["run", "{tmp}/bomb.yaml", "--no-prefect", "--no-track"],
                           ["bomb.yaml: more than 100,000 values"]),
    "validate-deep-yaml": Case(["validate", "{tmp}/deep.yaml"], ["deep.yaml: nested"]),
    "validate-big-yaml": Case(["validate", "{tmp}/big.yaml"],
                              ["big.yaml: 2,000,016 bytes; a config is a few KB"]),
    "track-list-config": Case(["track", "{tmp}/listrun"],
                              ["listrun/config.yaml: the top level must be a mapping"]),
    "track-corrupt-config": Case(["track", "{tmp}/corruptrun"],
                                 ["corruptrun/config.yaml: not valid YAML"]),
    # usage errors: one line too, exit 2
    "validate-without-config": Case(["validate"], ["CONFIG", "pst validate --help"], status=2),
    "compare-without-runs": Case(["compare"], ["Missing argument", "pst compare --help"],
                                 status=2),
    "track-not-a-run": Case(["track", "{tmp}/cwd"], ["not a run directory"]),
}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not p.relative_to(root).parts[0] in ("cache", "model"))


def _fill(text: str, workspace: dict[str, str]) -> str:
    for key, value in workspace.items():
        text = text.replace(f"{{{key}}}", value)
    return text


@pytest.fixture()
def workspace(tmp_path, tiny_llama_dir) -> dict[str, str]:
    for name, content in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        if callable(content):
            content(tmp_path / name)
        else:
            (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "model").symlink_to(tiny_llama_dir, target_is_directory=True)
    shutil.copytree(tiny_llama_dir, tmp_path / "notok")  # a model saved without its tokenizer
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "notok" / name).unlink(missing_ok=True)
    shutil.copytree(tiny_llama_dir, tmp_path / "cut")  # a download cut short
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = {
        "experiment": "bad", "rounds": 1, "questions_per_round": 2,
        "output_dir": str(tmp_path / "runs"),
        "data": {"pool": {"name": "pool", "path": str(tmp_path / "q.jsonl"), "split": "all"},
                 "eval": [{"name": "e", "benchmark": "synthetic", "synthetic": {"n": 10},
                           "split": "all", "limit": 2}]},
        "peers": [{"name": n, "source": str(tiny_llama_dir), "dtype": "float32"}
                  for n in ("a", "b")],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    recorded = tmp_path / "runs" / "bad" / "fixed" / "config.yaml"  # a run made before
    recorded.parent.mkdir(parents=True)
    recorded.write_text(yaml.safe_dump(parse_config(config | {"run": "fixed"}).model_dump(
        mode="json")))
    return {"tmp": str(tmp_path), "model": str(tiny_llama_dir),
            "config": str(tmp_path / "config.yaml")}


def _hub_reachable() -> bool:
    try:
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_error_line_and_writes_nothing(case, workspace, request):
    if request.node.callspec.id == "run-hub-benchmark-offline" and _hub_reachable():
        pytest.skip("the Hub is reachable here: the offline case cannot happen")
    tmp = Path(workspace["tmp"])
    before = _listing(tmp)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", *(_fill(a, workspace) for a in case.args)],
        capture_output=True, text=True, cwd=_fill(case.cwd, workspace),
        env={**os.environ, "PYTHONPATH": str(ROOT), "PST_CACHE_DIR": str(tmp / "cache"),
             "COLUMNS": "200", **case.env}, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    new = sorted(set(_listing(tmp)) - set(before))
    if case.writes:
        assert result.returncode == 0 and not errors, output
        assert new == [case.writes], new
        assert pq.read_table(tmp / case.writes).num_rows > 0
        return
    assert result.returncode == case.status, output
    assert len(errors) == 1, output
    for fragment in case.error:
        assert fragment in errors[0], errors[0]
    assert new == [], new


def test_bom_is_read_as_an_encoding_mark(tmp_path):
    """(The BOM cases above check that a file is written; here, what it holds.)"""
    from pst_core.data.ingest import ingest_dataset
    from pst_core.data.spec import DatasetConfig

    for name in ("bom.csv", "bom.jsonl"):
        (tmp_path / name).write_text(FILES[name], encoding="utf-8")
        table, _ = ingest_dataset(DatasetConfig(name="b", path=str(tmp_path / name)))
        assert table.select(["question", "answer"]).to_pylist() == [
            {"question": "A?", "answer": "4"}], name


# Faults no file can cause for a root user (CI's): the command runs with one call made to fail
# as the operating system would, around the real code.
_FAULT = """
import builtins, errno, fnmatch, os, sys
import pyarrow.parquet as pq
kind, pattern = sys.argv[1], sys.argv[2]
if kind == "unreadable":
    real_open = builtins.open
    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and fnmatch.fnmatch(os.fspath(file), pattern):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)
    builtins.open = guarded
else:
    real_write = pq.write_table
    def full(table, where, *args, **kwargs):
        if fnmatch.fnmatch(os.fspath(where), pattern):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(table, where, *args, **kwargs)
    pq.write_table = full
from flows.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _faulty(workspace, kind: str, pattern: str, *args: str) -> tuple[int, str]:
    command = [sys.executable, "-c", _FAULT, kind, pattern] if kind else [
        sys.executable, "-m", "flows.cli"]
    result = subprocess.run(
        [*command, *(_fill(a, workspace) for a in args)], capture_output=True, text=True,
        cwd=workspace["tmp"], timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("args", [["validate", "{config}"],
                                  ["ingest", "{tmp}/q.jsonl", "--out", "{tmp}/o.parquet"]])
def test_an_unreadable_data_file_is_one_line(workspace, args):
    before = _listing(Path(workspace["tmp"]))
    status, output = _faulty(workspace, "unreadable", "*/q.jsonl", *args)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert status == 1 and "Traceback" not in output, output
    assert len(errors) == 1 and "q.jsonl: Permission denied" in errors[0], output
    assert _listing(Path(workspace["tmp"])) == before


def test_a_full_disk_is_one_line_naming_the_file_and_the_rerun_resumes(workspace):
    args = ["run", "{config}", "--no-prefect", "--no-track"]
    status, output = _faulty(workspace, "full", "*/.e.parquet.*", *args)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert status == 1 and "Traceback" not in output, output
    assert len(errors) == 1, output
    assert "data/e.parquet: no space left on the device (" in errors[0]
    assert "GiB free there); free some and run the same command again" in errors[0]
    runs = Path(workspace["tmp"]) / "runs"
    assert not [p for p in runs.rglob(".*") if p.name != ".lock"]  # no temporary left
    status, output = _faulty(workspace, "", "", *args)
    assert status == 0, output[-3000:]
