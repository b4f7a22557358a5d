#!/usr/bin/env bash
# Builds the op library and the Catch2 suite with AddressSanitizer and UBSan in
# build/asan (Debug, -O1) and runs the suite: any report fails. Needs the .venv
# that scripts/setup.sh makes.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_prefix=$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DLAPLACE_ATTN_SANITIZE=address,undefined \
  -DLAPLACE_ATTN_BUILD_TESTS=ON -DLAPLACE_ATTN_BUILD_PYTHON=OFF -DLAPLACE_ATTN_BUILD_CLI=OFF \
  -DLAPLACE_ATTN_CHECK_CUDA=OFF >build/asan.log 2>&1 || { tail -n 30 build/asan.log; exit 1; }
cmake --build build/asan --target laplace_attn_tests -j "$(nproc)" >>build/asan.log 2>&1 ||
  { tail -n 30 build/asan.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build/asan/laplace_attn_tests
