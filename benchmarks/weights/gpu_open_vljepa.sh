#!/usr/bin/env bash
# The prepared GPU check for imported weights, one command on a CUDA host (about 10 minutes):
#   bash benchmarks/weights/gpu_open_vljepa.sh [OUT_DIR]
# 1. cameras per GPU through a checkpoint imported from open-vljepa's layout (vitl parts, random weights,
#    bf16, 8 frames per window): windows/s and p99 per camera count (the encoder batches across cameras);
# 2. the text-only Y-decoder recipe on it: steps/s, peak memory, hours for configs/train-text-decoder.yaml.
# PY=python3 uses a Python that already has a CUDA torch; otherwise the repo's venv (make venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
if [ -n "${PY:-}" ]; then py="$PY"; else [ -x .venv/bin/python ] || make venv; py=.venv/bin/python; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 480 $py -m benchmarks.cameras.gpu --open-vljepa --cameras 8,16,24,32 --seconds 15 \
    --json "$out/bench_cameras_open_vljepa.json" 2>"$out/cameras_open_vljepa.log"
timeout 300 $py -m benchmarks.weights.decoder --steps 200 --batch 128 --json "$out/bench_text_decoder.json" \
    2>"$out/text_decoder.log"
