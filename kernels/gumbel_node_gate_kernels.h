// gumbel_node_gate's CUDA kernel bodies and launch sequences (the form of
// kernels/launch.h): one thread per gate, the math of gumbel_node_gate_math.h.
#pragma once

#include <cstdint>

#include "gumbel_node_gate_math.h"
#include "launch.h"

namespace laplace_attn::gpu {

struct GateForward {
  static constexpr const char* kName = "gate_forward";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t i) {
    p.out[i] = math::gumbel_gate_forward_at(p, i);
  }
};

struct GateBackward {
  static constexpr const char* kName = "gate_backward";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t i) {
    p.out[i] = math::gumbel_gate_backward_at(p, i);
  }
};

template <class Launch, class T>
void launch_forward(Launch& launch, const GumbelGateParams<T>& p) {
  launch.template launch<GateForward>(p, p.numel);
}

template <class Launch, class T>
void launch_backward(Launch& launch, const GumbelGateParams<T>& p) {
  launch.template launch<GateBackward>(p, p.numel);
}

}  // namespace laplace_attn::gpu
