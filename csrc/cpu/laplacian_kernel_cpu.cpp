// laplacian_kernel on the CPU: threads over the kernels of
// laplacian_kernel_tiles.cpp, in the instruction set chosen at run time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/cpu_features.h"
#include "ops/laplacian_kernel_driver.h"

namespace laplace_attn {
namespace {

struct CpuBackend : cpu::CpuLayout {
  template <class T, class A>
  static void forward(const LaplacianKernelParams<T, A>& p) {
    const auto& kernels = cpu::laplacian_kernel_kernels_for<T, A>();
    at::parallel_for(0, kernels.num_forward_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.forward(p, begin, end); });
  }

  template <class T, class A>
  static void backward(const LaplacianKernelParams<T, A>& p) {
    const auto& kernels = cpu::laplacian_kernel_kernels_for<T, A>();
    const int64_t BH = p.batch * p.heads;
    if (p.grad_x1 || p.row_weighted_distance) {  // grad_x1 is null when D = 0
      at::parallel_for(0, BH * p.rows, 16,
                       [&](int64_t begin, int64_t end) { kernels.backward_rows(p, begin, end); });
    }
    if (p.grad_x2) {
      at::parallel_for(0, BH * p.cols, 16,
                       [&](int64_t begin, int64_t end) { kernels.backward_cols(p, begin, end); });
    }
    if (p.grad_inv_lambda) {
      for (int64_t h = 0; h < p.heads; ++h)
        math::reduce_inv_lambda_grad(p, h);
    }
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("laplacian_kernel", &run_laplacian_kernel<CpuBackend>);
  m.impl("_laplacian_kernel_backward", &run_laplacian_kernel_backward<CpuBackend>);
}

}  // namespace laplace_attn
