#!/usr/bin/env bash
# The CUDA EMD kernel on this machine's GPU, without TensorFlow, in one call
# of under 5 minutes: builds the standalone harness (gpu_harness.cc) and runs
# it (certificate self-test, timings against the goals, the kernel's profile,
# every shape), then compute-sanitizer memcheck and racecheck on a small
# solve (B = 2, N = 256). The first lines name the commit, the date and the
# toolchain, so that a kept log says what it measured:
#   CUDA_ARCHS=90 tf_ops/gpu_check.sh | tee results/benchmarks/gpu_check.txt
# Where the tree has no .git, GPU_CHECK_COMMIT names the commit. With
# MSN_DIR set to the emd/ folder of MSN's source (github
# Colin97/MSN-Point-Cloud-Completion, kept outside this repository) it then
# times MSN's approximate auction EMD on the same clouds and reports its
# error (benchmarks/emd_msn.py; needs PyTorch, up to 4 more minutes). Without
# a GPU the harness checks the CPU kernel and the certificate only, and the
# sanitizers are skipped. Exit status 0 when every check ran and passed.
set -uo pipefail
msn_dir=""
if [ -n "${MSN_DIR:-}" ]; then
  msn_dir=$(cd "$MSN_DIR" && pwd) || { echo "gpu_check: MSN_DIR=$MSN_DIR is not a folder" >&2; exit 1; }
fi
cd "$(dirname "$0")"
if ! nvcc_bin=$(command -v "${NVCC:-nvcc}"); then
  echo "gpu_check: nvcc not found on PATH; cannot build the GPU harness." >&2
  exit 1
fi
commit=${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet HEAD -- . ; then
  commit="$commit with uncommitted tf_ops changes"
fi
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "gpu_check: commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "gpu_check: $("$nvcc_bin" --version | tail -1), CUDA_ARCHS=${CUDA_ARCHS:-default}, driver ${driver:-none}"
make --no-print-directory harness NVCC="$nvcc_bin" || exit 1

status=0
dump_args=()
if [ -n "$msn_dir" ]; then
  dump_dir=$(mktemp -d)
  trap 'rm -rf "$dump_dir"' EXIT
  dump_args=(--dump="$dump_dir")
fi
timeout "${HARNESS_TIMEOUT:-200}" build/gpu_harness "${dump_args[@]}" ||
  { echo "gpu_check: the harness failed or timed out (exit $?)"; status=1; }

if [ -z "$driver" ]; then
  echo "gpu_check: no GPU driver (nvidia-smi): compute-sanitizer not run"
else
  sanitizer=""
  for candidate in "$(command -v compute-sanitizer)" \
      "$(dirname "$nvcc_bin")/compute-sanitizer" \
      "$(dirname "$nvcc_bin")/../compute-sanitizer/compute-sanitizer"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      sanitizer=$candidate
      break
    fi
  done
  if [ -z "$sanitizer" ]; then
    echo "gpu_check: compute-sanitizer not found beside nvcc or on PATH: memcheck and racecheck not run"
    status=1
  else
    for tool in memcheck racecheck; do
      extra=()
      [ "$tool" = memcheck ] && extra=(--leak-check full)
      echo "gpu_check: compute-sanitizer --tool $tool ${extra[*]} (B = 2, N = 256)"
      timeout "${SANITIZER_TIMEOUT:-45}" "$sanitizer" --tool "$tool" "${extra[@]}" \
          --error-exitcode 1 build/gpu_harness --sanitize ||
        { echo "gpu_check: compute-sanitizer $tool failed or timed out (exit $?)"; status=1; }
    done
  fi
fi
if [ -n "$msn_dir" ] && [ -z "$driver" ]; then
  echo "gpu_check: no GPU driver: the MSN comparison not run"
elif [ -n "$msn_dir" ]; then
  echo "gpu_check: MSN's EMD on the timed problems ($msn_dir)"
  timeout "${MSN_TIMEOUT:-240}" "${PYTHON:-python3}" ../benchmarks/emd_msn.py \
      --problems="$dump_dir" --msn_dir="$msn_dir" ||
    { echo "gpu_check: the MSN comparison failed or timed out (exit $?)"; status=1; }
fi
if [ "$status" != 0 ]; then
  echo "gpu_check: FAILED"
elif [ -z "$driver" ]; then
  echo "gpu_check: the CPU checks passed; no GPU, so nothing of the CUDA kernel was checked"
else
  echo "gpu_check: all passed"
fi
exit "$status"
