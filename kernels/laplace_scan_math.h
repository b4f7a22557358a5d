// Per-step math of the Laplace scan, written once for every backend.
//
// The CPU kernels instantiate these functions with SIMD lane vectors (GCC vector
// types, one lane per channel); the CUDA kernels instantiate them with scalars. A
// pole a = exp(-decay - i*freq) is always a scalar pair (ar, ai): it is shared by
// all channels of a node.
//
// Conventions. For a node with pole a and readout coefficient c, the forward
// recurrence carries t_n = a * t_{n-1} + x_n (x real). "Include current" reads
// Re(c * t_n); "exclude current" reads Re(c * a * t_{n-1}), the strictly causal
// (or anticausal) part. Gradients of complex quantities are stored as
// (dL/dre, dL/dim).
#pragma once

#include <cstdint>

#include "common.h"

// --- The raw-pointer description of one call ---------------------------------
//
// Shared by the CPU and CUDA kernels. The ATen-facing code fills it from
// validated, contiguous tensors: parameters and states in the compute type T
// (float, or double for double inputs); the sequences (u, y and their
// gradients) in their storage type A: T itself, or bfloat16_storage /
// float16_storage, read in place and computed on in T.
namespace laplace_attn {
template <class T, class A = T>
struct LaplaceScanParams {
  using compute_type = T;
  using activation_type = A;

  int64_t batch = 0;     // B
  int64_t length = 0;    // N
  int64_t heads = 0;     // H
  int64_t nodes = 0;     // S
  int64_t channels = 0;  // D
  bool bilateral = false;

  const A* u = nullptr;          // [B, N, H, D]
  const T* pole = nullptr;       // [H, S, 2]   a = exp(-decay) * exp(-i freq)
  const T* c_fwd = nullptr;      // [H, S, D, 2]
  const T* c_bwd = nullptr;      // [H, S, D, 2], null unless bilateral
  const T* gate = nullptr;       // [B, H, S], null means all ones
  const T* state_fwd = nullptr;  // [B, H, S, D, 2], null means zeros
  const T* state_bwd = nullptr;  // [B, H, S, D, 2], null means zeros

  A* y = nullptr;          // [B, N, H, D]
  T* final_fwd = nullptr;  // [B, H, S, D, 2]
  T* first_bwd = nullptr;  // [B, H, S, D, 2], null unless bilateral

  // Scratch of the chunked kernels (laplace_scan_kernels.h, the CUDA layout);
  // the CPU kernels leave it null. P = 2 passes if bilateral, else 1; C chunks.
  T* chunk_pole = nullptr;       // [H, S, 4]: a^L and a^(length of the last chunk)
  T* chunk_states = nullptr;     // [P, B, H, S, C, D, 2]: the state entering each chunk
  bool track_gated_off = false;  // also carry the states of nodes whose gate is 0
};

template <class T, class A = T>
struct LaplaceScanBackwardParams : LaplaceScanParams<T, A> {
  const A* grad_y = nullptr;          // [B, N, H, D]
  const T* grad_final_fwd = nullptr;  // [B, H, S, D, 2], null means zeros
  const T* grad_first_bwd = nullptr;  // [B, H, S, D, 2], null means zeros

  // Outputs; a null pointer means "not requested".
  A* grad_u = nullptr;          // [B, N, H, D]
  T* grad_state_fwd = nullptr;  // [B, H, S, D, 2]
  T* grad_state_bwd = nullptr;  // [B, H, S, D, 2]
  T* grad_c_fwd = nullptr;      // [H, S, D, 2]
  T* grad_c_bwd = nullptr;      // [H, S, D, 2]
  T* grad_decay = nullptr;      // [H, S]
  T* grad_freq = nullptr;       // [H, S]
  T* grad_gate = nullptr;       // [B, H, S]

  // Per-channel partial sums that the parameter-gradient pass reduces over
  // channels in a fixed order, so results do not depend on the thread count.
  T* partial_pole = nullptr;  // [H, S, D, 2]  dL/da per channel, summed over B
  T* partial_gate = nullptr;  // [B, H, S, D]  dL/dgate per channel

  // Scratch of the chunked kernels: the adjoint state entering each chunk, and
  // per-chunk-group parameter partials (grad c_fwd, grad c_bwd, dL/da as
  // complex pairs, then dL/dgate), reduced in a fixed order.
  T* chunk_adjoint = nullptr;   // [P, B, H, S, C, D, 2]
  T* chunk_partials = nullptr;  // [7, B, H, S, G, D]
};

// Which parts of the backward a call asks for (the driver leaves the outputs
// of the other part null; grad_u is null also when N = 0).
template <class T, class A>
LAPLACE_ATTN_HD bool wants_adjoint(const LaplaceScanBackwardParams<T, A>& p) {
  return p.grad_u || p.grad_state_fwd || p.grad_state_bwd;
}

template <class T, class A>
LAPLACE_ATTN_HD bool wants_param_grads(const LaplaceScanBackwardParams<T, A>& p) {
  return p.grad_c_fwd || p.grad_c_bwd || p.grad_decay || p.grad_freq || p.grad_gate;
}

}  // namespace laplace_attn

namespace laplace_attn::math {

template <class V>
struct Complex {
  V re;
  V im;
};

// a * z for a scalar pole a = (ar, ai).
template <class V, class P>
LAPLACE_ATTN_HD Complex<V> rotate(P ar, P ai, Complex<V> z) {
  return {ar * z.re - ai * z.im, ar * z.im + ai * z.re};
}

// Re(c * z).
template <class V>
LAPLACE_ATTN_HD V real_product(Complex<V> c, Complex<V> z) {
  return c.re * z.re - c.im * z.im;
}

// A complex value stored as a (re, im) pair; null reads as zero.
template <class T>
LAPLACE_ATTN_HD Complex<T> load_complex(const T* base, int64_t index, bool conjugate) {
  if (base == nullptr)
    return {T(0), T(0)};
  return {base[index], conjugate ? -base[index + 1] : base[index + 1]};
}

template <class T>
LAPLACE_ATTN_HD void store_complex(T* base, int64_t index, Complex<T> z, bool conjugate) {
  base[index] = z.re;
  base[index + 1] = conjugate ? -z.im : z.im;
}

// One step of the forward scan: t <- a*t + x. Returns this node's contribution to
// y at this step.
template <bool kIncludeCurrent, class V, class P>
LAPLACE_ATTN_HD V scan_step(Complex<V>& t, V x, P ar, P ai, Complex<V> c) {
  const Complex<V> s = rotate(ar, ai, t);
  t.re = s.re + x;
  t.im = s.im;
  return real_product(c, kIncludeCurrent ? t : s);
}

// One step of the transposed scan, which carries the adjoint of scan_step in
// conjugated form: the input enters through c and the readout is the real part.
// Run in the opposite time direction with the same pole, it maps dL/dy to dL/du.
template <bool kIncludeCurrent, class V, class P>
LAPLACE_ATTN_HD V scan_adjoint_step(Complex<V>& r, V g, P ar, P ai, Complex<V> c) {
  const Complex<V> t{r.re + g * c.re, r.im + g * c.im};
  const V out = kIncludeCurrent ? t.re : r.re;
  r = rotate(ar, ai, t);
  return out;
}

// One step of the forward scan carried together with its derivative dt = dt/da,
// accumulating sum_v += g * v and sum_dv += g * dv/da, where v is the value the
// readout sees. Then dL/dc = conj(sum_v) and the pole's share of dL/da is
// conj(c * sum_dv).
template <bool kIncludeCurrent, class V, class P>
LAPLACE_ATTN_HD void scan_pole_grad_step(Complex<V>& t, Complex<V>& dt, V x, V g, P ar, P ai,
                                         Complex<V>& sum_v, Complex<V>& sum_dv) {
  const Complex<V> s = rotate(ar, ai, t);
  Complex<V> ds = rotate(ar, ai, dt);
  ds.re += t.re;
  ds.im += t.im;
  t.re = s.re + x;
  t.im = s.im;
  dt = ds;
  const Complex<V> v = kIncludeCurrent ? t : s;
  sum_v.re += g * v.re;
  sum_v.im += g * v.im;
  sum_dv.re += g * ds.re;
  sum_dv.im += g * ds.im;
}

}  // namespace laplace_attn::math

namespace laplace_attn::math {

// dL/d(decay) and dL/d(freq) from g = dL/da. With a = exp(-decay - i*freq),
// da/d(decay) = -a and da/d(freq) = -i*a, so both are read off -g*conj(a).
template <class P>
LAPLACE_ATTN_HD void pole_parameter_grads(P ar, P ai, P g_re, P g_im, P& grad_decay, P& grad_freq) {
  grad_decay = -(g_re * ar + g_im * ai);
  grad_freq = -(g_im * ar - g_re * ai);
}

// The last step of the parameter gradients, shared by every backend: fold the
// per-channel partial sums of one (head, node) in a fixed order, in float64, so
// results do not depend on how the work was split.
// hk = head * S + node.
template <class T, class A>
LAPLACE_ATTN_HD void reduce_node_param_grads(const LaplaceScanBackwardParams<T, A>& p, int64_t hk) {
  const int64_t HS = p.heads * p.nodes, D = p.channels;
  if (p.partial_pole) {
    double g_re = 0, g_im = 0;
    for (int64_t d = 0; d < D; ++d) {
      g_re += p.partial_pole[(hk * D + d) * 2];
      g_im += p.partial_pole[(hk * D + d) * 2 + 1];
    }
    double grad_decay, grad_freq;
    pole_parameter_grads<double>(p.pole[hk * 2], p.pole[hk * 2 + 1], g_re, g_im, grad_decay,
                                 grad_freq);
    if (p.grad_decay)
      p.grad_decay[hk] = static_cast<T>(grad_decay);
    if (p.grad_freq)
      p.grad_freq[hk] = static_cast<T>(grad_freq);
  }
  if (p.grad_gate) {
    for (int64_t b = 0; b < p.batch; ++b) {
      double sum = 0;
      for (int64_t d = 0; d < D; ++d)
        sum += p.partial_gate[(b * HS + hk) * D + d];
      p.grad_gate[b * HS + hk] = static_cast<T>(sum);
    }
  }
}

}  // namespace laplace_attn::math
