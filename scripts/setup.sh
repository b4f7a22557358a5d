#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for laplace_attn and builds it; safe to
# run again (it skips what is already there).
#   - system packages: compiler, CMake, Ninja, Catch2 (v2 on Debian 12, v3 on 13)
#   - a virtual environment at .venv with torch==2.13.0 pinned (override with
#     TORCH_SPEC), pybind11, pytest, hypothesis (pinned), numpy, matplotlib,
#     scikit-learn, transformers and accelerate (pinned: the integration's tests)
#   - the package itself, pip install --no-build-isolation -e .
# LAPLACE_ATTN_BUILD_TESTS=1 also builds the Catch2 tests into build/cmake and
# installs clang (for the fuzz target).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ cmake ninja-build catch2 python3-venv)
# The tests also build a fuzz target with clang's libFuzzer.
[[ ${LAPLACE_ATTN_BUILD_TESTS:-0} == 1 ]] && packages+=(clang)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
torch_spec=${TORCH_SPEC:-torch==2.13.0}
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${torch_spec#torch==}')" 2>/dev/null; then
  echo "setup: installing $torch_spec"
  "${pip[@]}" install "$torch_spec"
fi
"${pip[@]}" install pybind11 pytest hypothesis==6.170.15 numpy matplotlib scikit-learn \
  transformers==5.24.0 accelerate==1.16.0

echo "setup: building laplace_attn"
if ! .venv/bin/python -m pip install --no-build-isolation -e . >build.log 2>&1; then
  tail -n 40 build.log
  echo "setup: the build failed; the full log is in build.log" >&2
  exit 1
fi
rm -f build.log
echo "setup: done ($(.venv/bin/python -c 'import laplace_attn; print(laplace_attn.build_info())'))"
