#!/usr/bin/env bash
# Builds the standalone GPU harness (CUDA + the CPU kernel, no TensorFlow) and
# runs it: CPU against CUDA EMD for B = 32, N in {256, 1024, 2048}.
# Without a GPU the harness says so and exits 0. Usage: tf_ops/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v "${NVCC:-nvcc}" >/dev/null 2>&1; then
  echo "gpu_check: nvcc not found on PATH; cannot build the GPU harness." >&2
  exit 1
fi
make --no-print-directory harness NVCC="$(command -v "${NVCC:-nvcc}")"
exec build/gpu_harness
