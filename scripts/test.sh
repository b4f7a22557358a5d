#!/usr/bin/env bash
# Sets up (if needed) and runs every test: the C++ tests (Catch2, through CTest),
# the CUDA compile check, the C++ tests again under ASan + UBSan, a bounded fuzz
# run of laplace-attn-infer's input handling, and the Python tests (pytest, with
# hypothesis property tests).
set -euo pipefail
cd "$(dirname "$0")/.."
LAPLACE_ATTN_BUILD_TESTS=1 bash scripts/setup.sh

echo "== CUDA kernels: compile check"
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  # One object per .cu file: in laplace_attn_cuda_kernels (a CPU-only torch) or
  # in laplace_attn itself (a CUDA-enabled torch).
  objects=$(find "${LAPLACE_ATTN_BUILD_DIR:-build/cmake}" -name '*.cu.o' | wc -l)
  sources=$(ls kernels/*.cu | wc -l)
  if [[ $objects -ne $sources ]]; then
    echo "expected $sources compiled .cu objects, found $objects" >&2
    exit 1
  fi
  echo "compiled $objects of $sources .cu files with nvcc"
else
  echo "nvcc not found: CUDA compile check not run"
fi

echo "== C++ tests"
ctest --test-dir build/cmake --output-on-failure

echo "== C++ tests under AddressSanitizer + UBSan"
bash scripts/sanitize.sh

echo "== Fuzzing laplace-attn-infer's input handling (libFuzzer)"
bash scripts/fuzz.sh

echo "== Python tests"
.venv/bin/python -m pytest tests/python -q "$@"
