#!/usr/bin/env bash
# GPU check for a lent accelerator (the device tool's machine): install genzoo and its plugins
# over the machine's own torch, then sample and finetune every first-party family on CUDA.
# Keep it under 8 minutes end to end; results land in $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# The GPU image has torch, huggingface_hub, safetensors, click, pluggy, tokenizers: no deps.
python3 -m pip install -q --no-deps --no-build-isolation -e . -e plugins/diffusion \
  -e plugins/vae -e plugins/gan -e plugins/textlm 2>&1 | tail -2 || \
  python3 -m pip install -q --no-deps -e . -e plugins/diffusion -e plugins/vae -e plugins/gan -e plugins/textlm
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 450 python3 benchmarks/gpu_check.py
