// laplacian_attention on the CPU: threads over the kernels of
// laplacian_attention_tiles.cpp, in the instruction set chosen at run time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/cpu_features.h"
#include "ops/laplacian_attention_driver.h"

namespace laplace_attn {
namespace {

struct CpuBackend : cpu::CpuLayout {
  template <class T, class A>
  static void forward(const LaplacianAttentionParams<T, A>& p) {
    const auto& kernels = cpu::laplacian_attention_kernels_for<T, A>();
    // A row against many keys is work enough for a thread of its own (decoding).
    const int64_t grain = p.keys >= 1024 ? 1 : 8;
    at::parallel_for(0, p.batch * p.heads * p.queries, grain,
                     [&](int64_t begin, int64_t end) { kernels.forward(p, begin, end); });
  }

  template <class T, class A>
  static void backward(const LaplacianAttentionParams<T, A>& p) {
    const auto& kernels = cpu::laplacian_attention_kernels_for<T, A>();
    const int64_t BH = p.batch * p.heads;
    if (p.saved_out) {
      at::parallel_for(0, BH * p.queries, 64,
                       [&](int64_t begin, int64_t end) { kernels.row_deltas(p, begin, end); });
    }
    if (p.grad_q || p.row_grad_lambda) {  // grad_q is null when D = 0
      at::parallel_for(0, BH * p.queries, 8, [&](int64_t begin, int64_t end) {
        kernels.backward_queries(p, begin, end);
      });
    }
    if (p.grad_k || p.grad_v) {  // grad_k is null when D = 0
      at::parallel_for(0, BH * p.keys, 8,
                       [&](int64_t begin, int64_t end) { kernels.backward_keys(p, begin, end); });
    }
  }

  // Sums the per-row partials over batch and rows, per head, in a fixed order.
  static void reduce_lambda(const at::Tensor& rows, at::Tensor& per_head) {
    AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "laplacian_attention_reduce", [&] {
      const int64_t B = rows.size(0), H = rows.size(1), N = rows.size(2);
      const scalar_t* src = rows.const_data_ptr<scalar_t>();
      scalar_t* dst = per_head.mutable_data_ptr<scalar_t>();
      for (int64_t h = 0; h < H; ++h) {
        double sum = 0;
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t i = 0; i < N; ++i)
            sum += src[(b * H + h) * N + i];
        }
        dst[h] = static_cast<scalar_t>(sum);
      }
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("_laplacian_attention_forward", &run_laplacian_attention_forward<CpuBackend>);
  m.impl("_laplacian_attention_backward", &run_laplacian_attention_backward<CpuBackend>);
}

}  // namespace laplace_attn
