#!/usr/bin/env bash
# The prepared GPU checks, one command on a CUDA host (about 10 minutes on an H200):
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
# 1. the sharded training recipe's step for vjepa2-vitl (random weights, bf16): samples/s per GPU by
#    micro-batch, live and cached X-encoder features, peak memory, MFU, projection (docs/training.md);
# 2. cameras per GPU: vjepa2-vitl inside the real service, 8..32 synthetic cameras at 256 px
#    (docs/benchmarks.md "Cameras").
# PY=python3 uses a Python that already has a CUDA torch (GPU hosts without a registry); otherwise the
# repo's venv, made if missing (make venv). Results are JSON files in OUT_DIR (default $OUT or ./gpu-results).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
if [ -n "${PY:-}" ]; then py="$PY"; else [ -x .venv/bin/python ] || make venv; py=.venv/bin/python; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 300 $py -m benchmarks.training.bench --vitl --budget 15000000 --json "$out/bench_train_vitl.json" 2>"$out/train.log"
timeout 420 $py -m benchmarks.cameras.gpu --cameras 8,16,24,32 --seconds 15 --json "$out/bench_cameras_gpu.json" 2>"$out/cameras.log"
