// Per-element math of gumbel_node_gate, shared by the CPU and CUDA kernels.
//
// The gate of a node with importance logit l is a binary Concrete sample
//   z = (l + log U - log(1 - U)) / tau,   soft = sigmoid(z),
// with U ~ Uniform(0, 1) given as an input (U = 1/2, no noise, in eval). The
// hard gate is 1[z > 0] forward and the soft gradient backward (straight through).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace laplace_attn::math {

template <class T>
LAPLACE_ATTN_HD T gumbel_gate_logit(T logit, T noise, T inv_tau, bool use_noise) {
  // Clamping U keeps log U - log(1 - U) finite, so an extreme draw cannot make 0/0.
  const T eps = T(1e-7);
  const T u = use_noise ? (noise < eps ? eps : (noise > T(1) - eps ? T(1) - eps : noise)) : T(0.5);
  return (logit + log(u) - log(T(1) - u)) * inv_tau;
}

template <class T>
LAPLACE_ATTN_HD T sigmoid(T z) {
  return T(1) / (T(1) + exp(-z));
}

template <class T>
LAPLACE_ATTN_HD T gumbel_gate_value(T z, bool hard) {
  return hard ? (z > T(0) ? T(1) : T(0)) : sigmoid(z);
}

// d(gate)/d(logit) of the soft gate, which the hard gate also uses.
template <class T>
LAPLACE_ATTN_HD T gumbel_gate_slope(T z, T inv_tau) {
  const T s = sigmoid(z);
  return s * (T(1) - s) * inv_tau;
}

}  // namespace laplace_attn::math

namespace laplace_attn {

// One gumbel_node_gate call (forward: out = gate; backward: out = grad * slope).
template <class T>
struct GumbelGateParams {
  using compute_type = T;

  int64_t numel = 0;
  const T* logits = nullptr;
  const T* noise = nullptr;  // used iff use_noise
  const T* grad = nullptr;   // backward only
  T* out = nullptr;
  T inv_tau = T(1);
  bool hard = false;
  bool use_noise = false;
};

namespace math {

template <class T>
LAPLACE_ATTN_HD T gumbel_gate_forward_at(const GumbelGateParams<T>& p, int64_t i) {
  const T z =
      gumbel_gate_logit(p.logits[i], p.use_noise ? p.noise[i] : T(0), p.inv_tau, p.use_noise);
  return gumbel_gate_value(z, p.hard);
}

template <class T>
LAPLACE_ATTN_HD T gumbel_gate_backward_at(const GumbelGateParams<T>& p, int64_t i) {
  const T z =
      gumbel_gate_logit(p.logits[i], p.use_noise ? p.noise[i] : T(0), p.inv_tau, p.use_noise);
  return p.grad[i] * gumbel_gate_slope(z, p.inv_tau);
}

}  // namespace math
}  // namespace laplace_attn
