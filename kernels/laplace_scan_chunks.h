// The chunk geometry, element access and the two scans (forward and adjoint)
// that laplace_scan's CUDA kernels share (laplace_scan_kernels.h explains the
// algorithm).
#pragma once

#include <cmath>
#include <cstdint>

#include "laplace_scan_math.h"
#include "launch.h"

namespace laplace_attn::gpu {

using math::Complex;

constexpr int64_t kScanChunk = 32;       // steps per chunk (the registers of a thread)
constexpr int64_t kChunksPerGroup = 4;   // chunks per thread of the parameter gradients
constexpr int64_t kPartialsPerNode = 7;  // grad c_fwd (2), grad c_bwd (2), dL/da (2), gate

LAPLACE_ATTN_HD int64_t num_chunks(int64_t length) {
  return ceil_div(length, kScanChunk);
}

LAPLACE_ATTN_HD int64_t num_groups(int64_t length) {
  return ceil_div(num_chunks(length), kChunksPerGroup);
}

template <class P>
LAPLACE_ATTN_HD int64_t num_passes(const P& p) {
  return p.bilateral ? 2 : 1;
}

// --- Element access -------------------------------------------------------------

template <class P>
LAPLACE_ATTN_HD auto gate_of(const P& p, int64_t b, int64_t h, int64_t k) {
  using T = typename P::compute_type;
  return p.gate ? p.gate[(b * p.heads + h) * p.nodes + k] : T(1);
}

// Offset of element (b, n, h, d) of a [B, N, H, D] sequence.
template <class P>
LAPLACE_ATTN_HD int64_t sequence_index(const P& p, int64_t b, int64_t n, int64_t h, int64_t d) {
  return ((b * p.length + n) * p.heads + h) * p.channels + d;
}

// Pair offset of (b, h, k, d) in a [B, H, S, D, 2] state.
template <class P>
LAPLACE_ATTN_HD int64_t state_index(const P& p, int64_t b, int64_t h, int64_t k, int64_t d) {
  return (((b * p.heads + h) * p.nodes + k) * p.channels + d) * 2;
}

// Pair offset of (pass, b, h, k, c, d) in a [P, B, H, S, C, D, 2] chunk buffer.
template <class P>
LAPLACE_ATTN_HD int64_t chunk_index(const P& p, int64_t pass, int64_t b, int64_t h, int64_t k,
                                    int64_t c, int64_t d) {
  const int64_t C = num_chunks(p.length);
  return (((((pass * p.batch + b) * p.heads + h) * p.nodes + k) * C + c) * p.channels + d) * 2;
}

template <class P>
LAPLACE_ATTN_HD Complex<typename P::compute_type> coefficient(const P& p, int64_t pass, int64_t h,
                                                              int64_t k, int64_t d) {
  const auto* coef = pass == 0 ? p.c_fwd : p.c_bwd;
  return math::load_complex(coef, ((h * p.nodes + k) * p.channels + d) * 2, false);
}

// The readout coefficient scaled by the node's gate (what the recurrences use).
template <class P, class T>
LAPLACE_ATTN_HD Complex<T> gated_coefficient(const P& p, int64_t pass, int64_t h, int64_t k,
                                             int64_t d, T gate) {
  const Complex<T> c = coefficient(p, pass, h, k, d);
  return {gate * c.re, gate * c.im};
}

// Steps [begin, begin + length) of chunk c.
struct ChunkRange {
  int64_t begin, length;
};

LAPLACE_ATTN_HD ChunkRange chunk_range(int64_t sequence_length, int64_t c) {
  const int64_t begin = c * kScanChunk;
  const int64_t rest = sequence_length - begin;
  return {begin, rest < kScanChunk ? rest : kScanChunk};
}

// The j-th step of a chunk in the direction of a pass.
template <bool kForwardInTime>
LAPLACE_ATTN_HD int64_t step_in_chunk(ChunkRange r, int64_t j) {
  return kForwardInTime ? r.begin + j : r.begin + r.length - 1 - j;
}

// --- The two scans and their two passes -----------------------------------------
//
// Pass 0 is causal (reads the current step), pass 1 anticausal (strictly
// excludes it). The forward scan runs pass 0 forward in time; its adjoint runs
// each pass in the opposite direction and carries states in conjugated form.

struct ForwardScan {
  static constexpr bool kAdjoint = false;

  static constexpr LAPLACE_ATTN_HD bool forward_in_time(int64_t pass) {
    return (pass == 0) != kAdjoint;
  }
  template <bool kIncludeCurrent, class V>
  static LAPLACE_ATTN_HD V step(Complex<V>& s, V x, V ar, V ai, Complex<V> c) {
    return math::scan_step<kIncludeCurrent>(s, x, ar, ai, c);
  }
  template <class P>
  static LAPLACE_ATTN_HD auto input(const P& p) {
    return p.u;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto output(const P& p) {
    return p.y;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto state_in(const P& p, int64_t pass) {
    return pass == 0 ? p.state_fwd : p.state_bwd;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto state_out(const P& p, int64_t pass) {
    return pass == 0 ? p.final_fwd : p.first_bwd;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto chunks(const P& p) {
    return p.chunk_states;
  }
  // Whether a node's states are carried: gated-off nodes only when asked.
  template <class P, class T>
  static LAPLACE_ATTN_HD bool runs(const P& p, T gate) {
    return gate != T(0) || p.track_gated_off;
  }
};

struct AdjointScan {
  static constexpr bool kAdjoint = true;

  static constexpr LAPLACE_ATTN_HD bool forward_in_time(int64_t pass) {
    return (pass == 0) != kAdjoint;
  }
  template <bool kIncludeCurrent, class V>
  static LAPLACE_ATTN_HD V step(Complex<V>& s, V g, V ar, V ai, Complex<V> c) {
    return math::scan_adjoint_step<kIncludeCurrent>(s, g, ar, ai, c);
  }
  template <class P>
  static LAPLACE_ATTN_HD auto input(const P& p) {
    return p.grad_y;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto output(const P& p) {
    return p.grad_u;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto state_in(const P& p, int64_t pass) {
    return pass == 0 ? p.grad_final_fwd : p.grad_first_bwd;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto state_out(const P& p, int64_t pass) {
    return pass == 0 ? p.grad_state_fwd : p.grad_state_bwd;
  }
  template <class P>
  static LAPLACE_ATTN_HD auto chunks(const P& p) {
    return p.chunk_adjoint;
  }
  template <class P, class T>
  static LAPLACE_ATTN_HD bool runs(const P&, T gate) {
    return gate != T(0);
  }
};

// Runs one chunk of one pass of one node from state s, in the pass's
// direction; `visit(n, value)` receives each step's readout.
template <class Scan, int kPass, class P, class T, class A, class Visit>
LAPLACE_ATTN_HD void run_chunk(const P& p, const A* input, int64_t b, int64_t h, int64_t d,
                               ChunkRange r, Complex<T>& s, T ar, T ai, Complex<T> c,
                               Visit&& visit) {
  constexpr bool kForward = Scan::forward_in_time(kPass);
  for (int64_t j = 0; j < r.length; ++j) {
    const int64_t n = step_in_chunk<kForward>(r, j);
    const T x = to_compute<T>(input[sequence_index(p, b, n, h, d)]);
    visit(n, Scan::template step<kPass == 0>(s, x, ar, ai, c));
  }
}

}  // namespace laplace_attn::gpu
