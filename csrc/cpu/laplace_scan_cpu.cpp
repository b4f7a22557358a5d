// laplace_scan on the CPU: threads over the raw-pointer kernels of
// laplace_scan_sweeps.cpp, in the instruction set chosen at run time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/cpu_features.h"
#include "laplace_scan_math.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn {
namespace {

// Folds the per-channel partial sums of the parameter pass, in float64 and in a
// fixed order.
template <class T>
void reduce_param_grads(const LaplaceScanBackwardParams<T>& p) {
  const int64_t HS = p.heads * p.nodes, D = p.channels;
  at::parallel_for(0, HS, 1, [&](int64_t begin, int64_t end) {
    for (int64_t hk = begin; hk < end; ++hk) {
      if (p.partial_pole) {
        double g_re = 0, g_im = 0;
        for (int64_t d = 0; d < D; ++d) {
          g_re += p.partial_pole[(hk * D + d) * 2];
          g_im += p.partial_pole[(hk * D + d) * 2 + 1];
        }
        double grad_decay, grad_freq;
        math::pole_parameter_grads<double>(p.pole[hk * 2], p.pole[hk * 2 + 1], g_re, g_im,
                                           grad_decay, grad_freq);
        if (p.grad_decay)
          p.grad_decay[hk] = static_cast<T>(grad_decay);
        if (p.grad_freq)
          p.grad_freq[hk] = static_cast<T>(grad_freq);
      }
      if (p.grad_gate) {
        for (int64_t b = 0; b < p.batch; ++b) {
          const T* src = p.partial_gate + (b * HS + hk) * D;
          double sum = 0;
          for (int64_t d = 0; d < D; ++d)
            sum += src[d];
          p.grad_gate[b * HS + hk] = static_cast<T>(sum);
        }
      }
    }
  });
}

struct CpuBackend {
  template <class T>
  static void forward(const LaplaceScanParams<T>& p) {
    const auto& kernels = cpu::laplace_scan_kernels_for<T>();
    at::parallel_for(0, kernels.num_scan_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.forward(p, begin, end); });
  }

  template <class T>
  static void adjoint(const LaplaceScanBackwardParams<T>& p) {
    const auto& kernels = cpu::laplace_scan_kernels_for<T>();
    at::parallel_for(0, kernels.num_scan_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.adjoint(p, begin, end); });
  }

  template <class T>
  static void param_grads(const LaplaceScanBackwardParams<T>& p) {
    const auto& kernels = cpu::laplace_scan_kernels_for<T>();
    at::parallel_for(0, kernels.num_param_tasks(p), 1,
                     [&](int64_t begin, int64_t end) { kernels.param_grads(p, begin, end); });
    reduce_param_grads(p);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("laplace_scan", &run_laplace_scan<CpuBackend>);
  m.impl("_laplace_scan_backward", &run_laplace_scan_backward<CpuBackend>);
}

}  // namespace laplace_attn
