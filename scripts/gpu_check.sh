#!/usr/bin/env bash
# One command for a GPU machine with CUDA, nvcc and a CUDA PyTorch already
# installed (no network needed; any torch version): builds laplace_attn against
# that torch for this GPU, runs the whole Python suite (every op and module test
# also on cuda), the Catch2 suite under compute-sanitizer (memcheck, racecheck),
# and the GPU benchmark against SDPA (flash) and the FFT form, printing one table.
#
#   bash scripts/gpu_check.sh              # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run    # anywhere: the same steps, CPU stand-ins
#
# --dry-run runs this script's own logic end to end without a GPU: it finds the
# tools, prints every command, builds nothing new (it uses .venv's build), runs
# the emulated-CUDA tests instead of the whole suite, runs the Catch2 suite
# without the sanitizer when compute-sanitizer is missing, and the benchmark on
# the CPU at small sizes. Environment: PYTHON (default: python3, or .venv's in
# --dry-run), OUT (default bench_results).
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    *) echo "gpu_check: unknown argument '$arg' (expected --dry-run)" >&2; exit 2 ;;
  esac
done

step() { echo; echo "== $*"; }
run() { echo "+ $*"; "$@"; }

if ((dry_run)); then
  python=${PYTHON:-.venv/bin/python}
else
  python=${PYTHON:-python3}
fi
out=${OUT:-bench_results}
build_dir=build/gpu-cmake

step "machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader
elif ((dry_run)); then
  echo "nvidia-smi not found (dry run: continuing)"
else
  echo "gpu_check: nvidia-smi not found: this is not a GPU machine (try --dry-run)" >&2
  exit 1
fi
nvcc_path=$(command -v nvcc || true)
[[ -n $nvcc_path ]] || { echo "gpu_check: nvcc not found on PATH" >&2; exit 1; }
"$nvcc_path" --version | tail -n 1
"$python" - "$dry_run" <<'EOF'
import sys
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuda available: {torch.cuda.is_available()}")
if sys.argv[1] == "0" and not torch.cuda.is_available():
    sys.exit("gpu_check: torch.cuda.is_available() is False: a CUDA build of torch and a GPU "
             "are needed (try --dry-run)")
EOF

step "build against this torch, for this GPU"
if ((dry_run)); then
  arch=$("$python" -c 'import torch; print("".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "90")')
  echo "would run: CUDAARCHS=$arch LAPLACE_ATTN_BUILD_DIR=$build_dir LAPLACE_ATTN_BUILD_TESTS=1 $python -m pip install --no-build-isolation --no-deps -e ."
  build_dir=build/cmake  # dry run: the build .venv already has
  [[ -f $build_dir/laplace_attn_tests ]] || { echo "gpu_check: no tests in $build_dir: run scripts/test.sh first" >&2; exit 1; }
else
  arch=$("$python" -c 'import torch; print("".join(map(str, torch.cuda.get_device_capability())))')
  CUDAARCHS=$arch LAPLACE_ATTN_BUILD_DIR=$build_dir LAPLACE_ATTN_BUILD_TESTS=1 \
    run "$python" -m pip install --no-build-isolation --no-deps -e . >"$build_dir.log" 2>&1 ||
    { tail -n 60 "$build_dir.log"; echo "gpu_check: the build failed ($build_dir.log)" >&2; exit 1; }
fi
"$python" -c 'import laplace_attn; print("build_info:", laplace_attn.build_info())'
export LAPLACE_ATTN_BUILD_DIR=$PWD/$build_dir
export LAPLACE_ATTN_EMULATION_LIB=$PWD/$build_dir/liblaplace_attn_emulation.so

step "Python tests (every op and module test on cpu and cuda)"
if ((dry_run)); then
  run "$python" -m pytest tests/python/test_cuda_emulation.py -q -p no:cacheprovider -k "plan or gpu or splits"
else
  run "$python" -m pytest tests/python -q -p no:cacheprovider
fi

step "Catch2 tests under compute-sanitizer"
sanitizer=$(command -v compute-sanitizer || true)
[[ -n $sanitizer || ! -x ${nvcc_path%/*}/compute-sanitizer ]] || sanitizer=${nvcc_path%/*}/compute-sanitizer
if [[ -n $sanitizer ]]; then
  for tool in memcheck racecheck; do
    run "$sanitizer" --tool "$tool" --error-exitcode 1 "$build_dir/laplace_attn_tests"
  done
elif ((dry_run)); then
  echo "compute-sanitizer not found (dry run: the suite runs without it)"
  run "$build_dir/laplace_attn_tests"
else
  echo "gpu_check: compute-sanitizer not found beside nvcc or on PATH" >&2
  exit 1
fi

step "benchmark (CUDA events) against SDPA flash and the FFT form"
if ((dry_run)); then
  run "$python" scripts/bench_cuda.py --device cpu --lengths 256 --repeats 1 --out "$out"
else
  run "$python" scripts/bench_cuda.py --out "$out"
fi
echo
echo "gpu_check: ok$( ((dry_run)) && echo ' (dry run)')"
