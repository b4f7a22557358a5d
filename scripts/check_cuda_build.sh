#!/usr/bin/env bash
# Builds laplace_attn against PyPI's CUDA build of the same torch version as
# .venv (a second environment, .venv-cuda), with nvcc for sm_80 and sm_90, and
# checks it on a machine without a GPU: everything links (the CUDA kernels and
# their ATen glue), the package imports, build_info()["cuda"] is true, every op
# has a CUDA kernel registered, and the Catch2 and Python suites pass on the CPU
# against this build. Not part of CI (it downloads about 3 GB once).
#   bash scripts/check_cuda_build.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

torch_version=${TORCH_VERSION:-$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')}
venv=.venv-cuda
build_dir=build/cuda-cmake
wheels=build/cuda-wheels
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

echo "== environment: torch $torch_version (CUDA build) in $venv"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(not (torch.__version__.startswith('$torch_version') and torch.version.cuda))" 2>/dev/null; then
  mkdir -p "$wheels"
  # --isolated: past this machine's pip configuration, which prefers the CPU wheel.
  ls "$wheels"/torch-"$torch_version"-*.whl >/dev/null 2>&1 ||
    "${pip[@]}" download --isolated --no-deps "torch==$torch_version" -d "$wheels"
  "${pip[@]}" install "$wheels"/torch-"$torch_version"-*.whl
fi
"${pip[@]}" install pybind11 pytest hypothesis==6.170.15 numpy matplotlib scikit-learn
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

echo "== CUDA toolkit: this machine's nvcc and runtime, the libraries of torch's CUDA wheels"
# torch's CMake configuration links cuBLAS, cuFFT, ... which the wheels carry and
# the system toolkit here lacks: one toolkit folder made of links to both.
cuda_home=${CUDA_HOME:-/usr/local/cuda}
[[ -x $cuda_home/bin/nvcc ]] || { echo "check_cuda_build: no nvcc in $cuda_home/bin (set CUDA_HOME)" >&2; exit 1; }
nvidia=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")')
toolkit=$PWD/build/cuda-toolkit
rm -rf "$toolkit" && mkdir -p "$toolkit/include" "$toolkit/lib64"
ln -s "$cuda_home/bin" "$toolkit/bin"
ln -s "$cuda_home/nvvm" "$toolkit/nvvm"
for dir in "$cuda_home" "$nvidia"/cu13 "$nvidia"/cudnn "$nvidia"/nccl "$nvidia"/cusparselt; do
  for sub in include lib64 lib; do
    [[ -d $dir/$sub ]] || continue
    dest=$toolkit/$([[ $sub == include ]] && echo include || echo lib64)
    for f in "$dir/$sub"/*; do
      [[ -e $dest/$(basename "$f") ]] || ln -s "$f" "$dest/$(basename "$f")"
    done
  done
done
for lib in "$toolkit"/lib64/lib*.so.*; do  # the link-time names (libcublas.so)
  base=${lib##*/}; base=${base%%.so.*}.so
  [[ -e $toolkit/lib64/$base ]] || ln -s "$lib" "$toolkit/lib64/$base"
done
mkdir -p "$toolkit/targets/x86_64-linux"  # where CMake looks beside nvcc
ln -s ../../include "$toolkit/targets/x86_64-linux/include"
ln -s ../../lib64 "$toolkit/targets/x86_64-linux/lib"
echo "toolkit: $toolkit (nvcc from $cuda_home)"

echo "== build: nvcc for sm_80 and sm_90"
# Exported: the Python tests configure and install C++ projects from this build too.
export CUDAARCHS="80;90" TORCH_CUDA_ARCH_LIST="8.0;9.0"
export LAPLACE_ATTN_CMAKE_ARGS="-DCUDA_TOOLKIT_ROOT_DIR=$toolkit -DCUDAToolkit_ROOT=$toolkit -DCMAKE_CUDA_COMPILER=$toolkit/bin/nvcc"
export LAPLACE_ATTN_BUILD_DIR=$PWD/$build_dir
LAPLACE_ATTN_BUILD_TESTS=1 \
  "${pip[@]}" install --no-build-isolation --no-deps --force-reinstall . >"$build_dir.log" 2>&1 ||
  { tail -n 60 "$build_dir.log"; echo "check_cuda_build: the build failed ($build_dir.log)" >&2; exit 1; }

echo "== what was built"
if command -v cuobjdump >/dev/null 2>&1; then
  cuobjdump --list-elf "$build_dir/liblaplace_attn.so" | sed 's/.*\(sm_[0-9]*\).*/\1/' | sort | uniq -c
else  # the code nvcc was asked to generate, per .cu file
  grep -o -- '-gencode arch=[^ ]*' "$build_dir/build.ninja" | sort | uniq -c
fi
echo "CUDA objects: $(find "$build_dir" -name '*.cu.o' | wc -l) of $(ls kernels/*.cu | wc -l) .cu files"
nm -C --defined-only "$build_dir/liblaplace_attn.so" | grep -c ' laplace_attn::cuda_\(forward\|backward\)<' |
  xargs echo "CUDA launchers (op x dtype x direction) linked into liblaplace_attn.so:"
# Run from outside the source tree, so the installed package is the one imported.
(cd /tmp && "$OLDPWD/$venv/bin/python" - <<'EOF'
import torch
import laplace_attn

info = laplace_attn.build_info()
print("build_info:", info)
assert info["cuda"], "build_info()['cuda'] is False in the CUDA build"
ops = ["laplace_scan", "_laplace_scan_backward", "gumbel_node_gate", "_gumbel_node_gate_backward",
       "laplacian_kernel", "_laplacian_kernel_backward", "_laplacian_attention_forward",
       "_laplacian_attention_backward"]
missing = [op for op in ops
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"laplace_attn::{op}", "CUDA")]
assert not missing, f"no CUDA kernel registered for {missing}"
print(f"CUDA kernels registered for all {len(ops)} ops; torch.cuda.is_available() =",
      torch.cuda.is_available())
EOF
)

echo "== C++ tests (CPU) against the CUDA build"
ctest --test-dir "$build_dir" --output-on-failure

echo "== Python tests (CPU) against the CUDA build"
LAPLACE_ATTN_EMULATION_LIB=$PWD/$build_dir/liblaplace_attn_emulation.so \
  "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider "$@"
echo "check_cuda_build: ok"
