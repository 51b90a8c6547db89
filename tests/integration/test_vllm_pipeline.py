"""The whole pipeline on vLLM (opt-in: PST_VLLM_PYTHON names the python of an environment with
vLLM and Prefect, such as the one ``bench/vllm_env.sh`` builds): bench/vllm_pipeline.py runs
`pst run` as the Prefect flow with MLflow on, every peer on the vLLM backend and then on
transformers, and writes the two side by side. About 25 minutes on 2 cores (each vLLM engine
start compiles the model)."""

import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers import VLLM_PYTHON, needs_vllm_python

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_vllm_python("vLLM and Prefect")


def test_the_pipeline_runs_on_vllm_and_is_compared_with_transformers(tmp_path):
    from pst_core.models.offline import fetch_offline_model

    fetch_offline_model("smollm2-135m-instruct")
    done = subprocess.run([VLLM_PYTHON, "bench/vllm_pipeline.py", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=3000, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for backend in ("vllm", "transformers"):
        evals = pq.read_table(tmp_path / backend / "round_1" / "eval.parquet").to_pylist()
        assert len([x for x in evals if x["kind"] == "greedy"]) == 8
        assert (tmp_path / backend / "round_1" / "targets.parquet").exists()
    report = (tmp_path / "COMPARISON.md").read_text()
    assert "| 1 | eval (greedy answers right) |" in report
