// The parameter gradients of laplace_scan's CUDA backward: per-node partials
// over groups of chunks and their fixed-order reductions (laplace_scan_kernels.h
// explains the algorithm).
#pragma once

#include <cstdint>

#include "laplace_scan_chunks.h"

namespace laplace_attn::gpu {

using math::Complex;

// Thread (b, h, k, g, d): one node's parameter partials over chunk group g.
struct ScanParamPartials {
  static constexpr const char* kName = "scan_param_partials";

  // Partials of one pass over one chunk: sum_v = sum_n g_n v_n (v the state the
  // readout sees) and, unless the node is gated off, dL/da.
  template <int kPass, class P, class T>
  static LAPLACE_ATTN_HD void add_chunk(const P& p, int64_t b, int64_t h, int64_t k, int64_t c,
                                        int64_t d, T gate, Complex<T>& sum_v, Complex<T>& grad_a) {
    constexpr bool kForward = ForwardScan::forward_in_time(kPass);
    constexpr bool kIncludeCurrent = kPass == 0;
    const ChunkRange r = chunk_range(p.length, c);
    const T ar = p.pole[(h * p.nodes + k) * 2], ai = p.pole[(h * p.nodes + k) * 2 + 1];
    const int64_t ci = chunk_index(p, kPass, b, h, k, c, d);
    Complex<T> prev[kScanChunk];
    Complex<T> t = math::load_complex(p.chunk_states, ci, false);
    for (int64_t j = 0; j < r.length; ++j) {
      const int64_t i = sequence_index(p, b, step_in_chunk<kForward>(r, j), h, d);
      prev[j] = t;
      const Complex<T> s = math::rotate(ar, ai, t);
      t = {s.re + to_compute<T>(p.u[i]), s.im};
      const Complex<T> v = kIncludeCurrent ? t : s;
      const T g = to_compute<T>(p.grad_y[i]);
      sum_v.re += g * v.re;
      sum_v.im += g * v.im;
    }
    if (gate == T(0) || p.partial_pole == nullptr)
      return;
    const Complex<T> c_eff = gated_coefficient(p, kPass, h, k, d, gate);
    Complex<T> adj = math::load_complex(p.chunk_adjoint, ci, false);
    for (int64_t j = r.length - 1; j >= 0; --j) {
      const T g =
          to_compute<T>(p.grad_y[sequence_index(p, b, step_in_chunk<kForward>(r, j), h, d)]);
      const Complex<T> full{adj.re + g * c_eff.re, adj.im + g * c_eff.im};
      // conj(full * prev): the share of this step in dL/da.
      grad_a.re += full.re * prev[j].re - full.im * prev[j].im;
      grad_a.im -= full.re * prev[j].im + full.im * prev[j].re;
      adj = math::rotate(ar, ai, full);
    }
  }

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    using T = typename P::compute_type;
    const int64_t G = num_groups(p.length), C = num_chunks(p.length);
    const int64_t d = thread % p.channels, g = thread / p.channels % G;
    const int64_t k = thread / (p.channels * G) % p.nodes;
    const int64_t h = thread / (p.channels * G * p.nodes) % p.heads;
    const int64_t b = thread / (p.channels * G * p.nodes * p.heads);
    const T gate = gate_of(p, b, h, k);
    Complex<T> sum_v[2] = {{T(0), T(0)}, {T(0), T(0)}}, grad_a{T(0), T(0)};
    if (gate != T(0) || p.grad_gate) {
      for (int64_t c = g * kChunksPerGroup; c < C && c < (g + 1) * kChunksPerGroup; ++c) {
        add_chunk<0>(p, b, h, k, c, d, gate, sum_v[0], grad_a);
        if (p.bilateral)
          add_chunk<1>(p, b, h, k, c, d, gate, sum_v[1], grad_a);
      }
    }
    const Complex<T> c0 = coefficient(p, 0, h, k, d);
    const Complex<T> c1 = p.bilateral ? coefficient(p, 1, h, k, d) : Complex<T>{T(0), T(0)};
    const T values[kPartialsPerNode] = {
        gate * sum_v[0].re,
        -gate * sum_v[0].im,
        gate * sum_v[1].re,
        -gate * sum_v[1].im,
        grad_a.re,
        grad_a.im,
        math::real_product(c0, sum_v[0]) + math::real_product(c1, sum_v[1])};
    const int64_t stride = p.batch * p.heads * p.nodes * G * p.channels;
    for (int64_t q = 0; q < kPartialsPerNode; ++q)
      p.chunk_partials[q * stride + thread] = values[q];
  }
};

// Thread (h, k, d): the partials summed over batch and chunk groups in a fixed
// order, into grad c, the per-channel dL/da and the per-channel dL/dgate.
struct ScanReducePartials {
  static constexpr const char* kName = "scan_reduce_partials";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    using T = typename P::compute_type;
    const int64_t G = num_groups(p.length), D = p.channels;
    const int64_t d = thread % D, hk = thread / D;
    const int64_t stride = p.batch * p.heads * p.nodes * G * D;
    double sums[kPartialsPerNode - 1] = {0, 0, 0, 0, 0, 0};
    for (int64_t b = 0; b < p.batch; ++b) {
      double gate_sum = 0;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t i = ((b * p.heads * p.nodes + hk) * G + g) * D + d;
        for (int64_t q = 0; q < kPartialsPerNode - 1; ++q)
          sums[q] += p.chunk_partials[q * stride + i];
        gate_sum += p.chunk_partials[(kPartialsPerNode - 1) * stride + i];
      }
      if (p.partial_gate)
        p.partial_gate[(b * p.heads * p.nodes + hk) * D + d] = static_cast<T>(gate_sum);
    }
    const int64_t ci = (hk * D + d) * 2;
    T* outputs[3] = {p.grad_c_fwd, p.grad_c_bwd, p.partial_pole};
    for (int q = 0; q < 3; ++q) {
      if (outputs[q]) {
        outputs[q][ci] = static_cast<T>(sums[2 * q]);
        outputs[q][ci + 1] = static_cast<T>(sums[2 * q + 1]);
      }
    }
  }
};

// Thread hk: dL/d(decay), dL/d(freq) and dL/dgate of one node.
struct ScanReduceNodes {
  static constexpr const char* kName = "scan_reduce_nodes";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t hk) {
    math::reduce_node_param_grads(p, hk);
  }
};

}  // namespace laplace_attn::gpu
