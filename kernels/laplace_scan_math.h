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

#include "common.h"

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

}  // namespace laplace_attn::math
