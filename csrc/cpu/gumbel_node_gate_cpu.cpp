// gumbel_node_gate on the CPU. Gates are few ([B, H, S]), so a plain threaded
// loop over the shared per-element math is all it needs.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/gumbel_node_gate_driver.h"

namespace laplace_attn {
namespace {

constexpr int64_t kGrain = 32768;

struct CpuBackend {
  template <class T>
  static void forward(const GumbelGateParams<T>& p) {
    at::parallel_for(0, p.numel, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        p.out[i] = math::gumbel_gate_forward_at(p, i);
    });
  }

  template <class T>
  static void backward(const GumbelGateParams<T>& p) {
    at::parallel_for(0, p.numel, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        p.out[i] = math::gumbel_gate_backward_at(p, i);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("gumbel_node_gate", &run_gumbel_node_gate<CpuBackend>);
  m.impl("_gumbel_node_gate_backward", &run_gumbel_node_gate_backward<CpuBackend>);
}

}  // namespace laplace_attn
