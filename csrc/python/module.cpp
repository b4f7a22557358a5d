// laplace_attn._C: loading it loads the op library (which registers the
// operators) and exposes the build facts. Tensors never cross this module; the
// operators are reached through torch.ops.laplace_attn.
#include <pybind11/pybind11.h>

#include "laplace_attn/build_info.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "laplace_attn native extension";
  m.def(
      "build_info",
      [] {
        const laplace_attn::BuildInfo info = laplace_attn::build_info();
        py::dict d;
        d["version"] = info.version;
        d["simd"] = info.simd;
        d["num_threads"] = info.num_threads;
        d["openmp"] = info.openmp;
        d["cuda"] = info.cuda;
        return d;
      },
      "Version, CPU SIMD level chosen at run time, threads, OpenMP and CUDA support.");
  m.def("set_cpu_simd", &laplace_attn::set_cpu_simd, py::arg("level"),
        "Force the CPU kernels' instruction set: 'auto', 'avx512_bf16', 'avx512', 'avx2' or "
        "'baseline'.");
}
