// laplace_scan on the CPU: threads over the raw-pointer kernels of
// laplace_scan_tiles.cpp, in the instruction set chosen at run time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/cpu_features.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn {
namespace {

struct CpuBackend : cpu::CpuLayout {
  template <class T, class A>
  static void forward(const LaplaceScanParams<T, A>& p) {
    const auto& kernels = cpu::laplace_scan_kernels_for<T, A>();
    at::parallel_for(0, kernels.num_scan_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.forward(p, begin, end); });
  }

  template <class T, class A>
  static void backward(const LaplaceScanBackwardParams<T, A>& p) {
    const auto& kernels = cpu::laplace_scan_kernels_for<T, A>();
    if (wants_adjoint(p)) {
      at::parallel_for(0, kernels.num_scan_tasks(p), 1,
                       [&](int64_t begin, int64_t end) { kernels.adjoint(p, begin, end); });
    }
    if (!wants_param_grads(p))
      return;
    at::parallel_for(0, kernels.num_param_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.param_grads(p, begin, end); });
    at::parallel_for(0, p.heads * p.nodes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t hk = begin; hk < end; ++hk)
        math::reduce_node_param_grads(p, hk);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("laplace_scan", &run_laplace_scan<CpuBackend>);
  m.impl("_laplace_scan_backward", &run_laplace_scan_backward<CpuBackend>);
}

}  // namespace laplace_attn
