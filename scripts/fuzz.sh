#!/usr/bin/env bash
# Fuzzes laplace-attn-infer's input handling (tests/fuzz/fuzz_inputs.cpp) with
# libFuzzer + AddressSanitizer + UBSan for a bounded number of runs, from a seed
# corpus of torch.save files and the inputs earlier runs found (tests/fuzz/
# regressions). A crash, sanitizer report, leak, timeout or out-of-memory fails.
#   FUZZ_RUNS (default 20000), FUZZ_SECONDS (default 120): whichever ends first.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_prefix=$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S tests/fuzz -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_PREFIX_PATH="$torch_prefix" >build/fuzz.log 2>&1 || { tail -n 30 build/fuzz.log; exit 1; }
cmake --build build/fuzz >>build/fuzz.log 2>&1 || { tail -n 30 build/fuzz.log; exit 1; }
rm -rf build/fuzz/corpus build/fuzz/seeds build/fuzz/findings
mkdir -p build/fuzz/corpus build/fuzz/findings
.venv/bin/python tests/fuzz/make_corpus.py build/fuzz/seeds
# The same seed and starting corpus every time, so a finding reproduces.
if ! LSAN_OPTIONS=suppressions="$PWD/tests/fuzz/lsan.supp" \
  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
  build/fuzz/fuzz_inputs -seed=1 -runs="${FUZZ_RUNS:-20000}" \
  -max_total_time="${FUZZ_SECONDS:-120}" -timeout=10 -rss_limit_mb=4096 -max_len=8192 \
  -artifact_prefix=build/fuzz/findings/ build/fuzz/corpus build/fuzz/seeds tests/fuzz/regressions \
  >build/fuzz/run.log 2>&1; then
  grep -E "ERROR|SUMMARY|what\(\)" build/fuzz/run.log | head -n 20
  echo "fuzz: a finding; input in build/fuzz/findings/, log in build/fuzz/run.log" >&2
  exit 1
fi
grep -E "^Done [0-9]+ runs" build/fuzz/run.log
