// laplace_scan parallel over time: the kernel bodies of the CUDA backend
// (kernels/launch.h explains the form), run on a GPU by laplace_scan.cu and on
// the CPU by the tests' launch emulator.
//
// The sequence is cut into chunks of kScanChunk steps. Every recurrence of the
// scan, forward (t <- a t + x) and adjoint (r <- a (r + g c)), is affine in its
// state with the factor a per step, so a chunk maps its incoming state s to
// a^len s + local, where local is the chunk run from zero. Three kernels follow:
//   1. summaries: each (batch, head, chunk, channel) runs its chunk from zero,
//      for every node and pass, and stores `local`;
//   2. compose:   each (batch, head, node, channel) walks the chunks in order,
//      s_next = a^len s + local (a^len formed from the pole in float64, never by
//      repeated multiplication), storing the state entering each chunk;
//   3. outputs:   each (batch, head, chunk, channel) re-runs its chunk from the
//      true incoming states and writes the sequence once (both passes summed in
//      registers, so 16-bit outputs are rounded once).
// The parameter gradients re-run chunk groups per node from the forward and
// adjoint states entering them, with dL/da = sum_n conj(r_n t_prev(n)) (r the
// adjoint state in conjugated form), and reduce per-group partials in a fixed
// order: deterministic, no atomics. Consecutive threads take consecutive
// channels, so every access to [B, N, H, D] sequences and to the scratch
// coalesces.
#pragma once

#include <cmath>
#include <cstdint>

#include "launch.h"
#include "laplace_scan_math.h"

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

// --- Kernels ----------------------------------------------------------------------

// Thread hk: a^L and a^(last chunk's length) of node hk, in float64 from the
// pole's modulus and angle.
struct ScanChunkPowers {
  static constexpr const char* kName = "scan_chunk_powers";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t hk) {
    using T = typename P::compute_type;
    const double ar = p.pole[hk * 2], ai = p.pole[hk * 2 + 1];
    const double log_radius = 0.5 * log(ar * ar + ai * ai), angle = atan2(ai, ar);
    const int64_t C = num_chunks(p.length);
    const int64_t lengths[2] = {kScanChunk, C > 0 ? chunk_range(p.length, C - 1).length : 0};
    for (int i = 0; i < 2; ++i) {
      const double m = static_cast<double>(lengths[i]);
      const double radius = m == 0 ? 1.0 : exp(m * log_radius);
      p.chunk_pole[hk * 4 + 2 * i] = static_cast<T>(radius * cos(m * angle));
      p.chunk_pole[hk * 4 + 2 * i + 1] = static_cast<T>(radius * sin(m * angle));
    }
  }
};

// Decomposes a thread index with the channel fastest: (b, h, c, d).
template <class P>
struct ChunkThread {
  int64_t b, h, c, d;
  LAPLACE_ATTN_HD ChunkThread(const P& p, int64_t thread, int64_t chunks)
      : b(thread / (p.channels * chunks * p.heads)),
        h(thread / (p.channels * chunks) % p.heads),
        c(thread / p.channels % chunks),
        d(thread % p.channels) {}
};

// Thread (b, h, c, d): every node's chunk run from zero.
template <class Scan>
struct ScanChunkSummaries {
  static constexpr const char* kName = Scan::kAdjoint ? "adjoint_chunk_summaries"
                                                      : "scan_chunk_summaries";
  template <int kPass, class P>
  static LAPLACE_ATTN_HD void run_pass(const P& p, const ChunkThread<P>& t) {
    using T = typename P::compute_type;
    const ChunkRange r = chunk_range(p.length, t.c);
    for (int64_t k = 0; k < p.nodes; ++k) {
      const T gate = gate_of(p, t.b, t.h, k);
      if (!Scan::runs(p, gate))
        continue;
      const Complex<T> c = coefficient(p, kPass, t.h, k, t.d);
      Complex<T> s{T(0), T(0)};
      run_chunk<Scan, kPass>(p, Scan::input(p), t.b, t.h, t.d, r, s, p.pole[(t.h * p.nodes + k) * 2],
                             p.pole[(t.h * p.nodes + k) * 2 + 1], Complex<T>{gate * c.re, gate * c.im},
                             [](int64_t, T) {});
      math::store_complex(Scan::chunks(p), chunk_index(p, kPass, t.b, t.h, k, t.c, t.d), s, false);
    }
  }
  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    const ChunkThread<P> t(p, thread, num_chunks(p.length));
    run_pass<0>(p, t);
    if (p.bilateral)
      run_pass<1>(p, t);
  }
};

// Thread (b, h, k, d): the state entering every chunk, and the state leaving
// the sequence (a gated-off node passes its incoming state through).
template <class Scan>
struct ScanChunkCompose {
  static constexpr const char* kName = Scan::kAdjoint ? "adjoint_chunk_compose"
                                                      : "scan_chunk_compose";
  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    using T = typename P::compute_type;
    const int64_t d = thread % p.channels, k = thread / p.channels % p.nodes;
    const int64_t h = thread / (p.channels * p.nodes) % p.heads;
    const int64_t b = thread / (p.channels * p.nodes * p.heads);
    const int64_t C = num_chunks(p.length), hk = h * p.nodes + k;
    const T gate = gate_of(p, b, h, k);
    for (int64_t pass = 0; pass < num_passes(p); ++pass) {
      const int64_t si = state_index(p, b, h, k, d);
      const Complex<T> incoming = math::load_complex(Scan::state_in(p, pass), si, Scan::kAdjoint);
      Complex<T> s = incoming;
      if (Scan::runs(p, gate)) {
        for (int64_t i = 0; i < C; ++i) {
          const int64_t c = Scan::forward_in_time(pass) ? i : C - 1 - i;
          const int64_t ci = chunk_index(p, pass, b, h, k, c, d);
          const Complex<T> local = math::load_complex(Scan::chunks(p), ci, false);
          math::store_complex(Scan::chunks(p), ci, s, false);
          const T* power = p.chunk_pole + hk * 4 + (c == C - 1 ? 2 : 0);
          s = math::rotate(power[0], power[1], s);
          s.re += local.re;
          s.im += local.im;
        }
      }
      T* out = Scan::state_out(p, pass);
      if (out)
        math::store_complex(out, si, gate != T(0) ? s : incoming, Scan::kAdjoint);
    }
  }
};

// Thread (b, h, c, d): the chunk's outputs from the true incoming states.
template <class Scan>
struct ScanChunkOutputs {
  static constexpr const char* kName = Scan::kAdjoint ? "adjoint_chunk_outputs"
                                                      : "scan_chunk_outputs";
  template <int kPass, class P, class T>
  static LAPLACE_ATTN_HD void add_pass(const P& p, const ChunkThread<P>& t, ChunkRange r, T* acc) {
    for (int64_t k = 0; k < p.nodes; ++k) {
      const T gate = gate_of(p, t.b, t.h, k);
      if (gate == T(0))
        continue;
      const Complex<T> c = coefficient(p, kPass, t.h, k, t.d);
      Complex<T> s =
          math::load_complex(Scan::chunks(p), chunk_index(p, kPass, t.b, t.h, k, t.c, t.d), false);
      run_chunk<Scan, kPass>(p, Scan::input(p), t.b, t.h, t.d, r, s,
                             p.pole[(t.h * p.nodes + k) * 2], p.pole[(t.h * p.nodes + k) * 2 + 1],
                             Complex<T>{gate * c.re, gate * c.im},
                             [&](int64_t n, T value) { acc[n - r.begin] += value; });
    }
  }
  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    using T = typename P::compute_type;
    using A = typename P::activation_type;
    const ChunkThread<P> t(p, thread, num_chunks(p.length));
    const ChunkRange r = chunk_range(p.length, t.c);
    T acc[kScanChunk];
    for (int64_t j = 0; j < kScanChunk; ++j)
      acc[j] = T(0);
    add_pass<0>(p, t, r, acc);
    if (p.bilateral)
      add_pass<1>(p, t, r, acc);
    A* out = Scan::output(p);
    for (int64_t j = 0; j < r.length; ++j)
      out[sequence_index(p, t.b, r.begin + j, t.h, t.d)] = from_compute<A>(acc[j]);
  }
};

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
    const Complex<T> coef = coefficient(p, kPass, h, k, d);
    const Complex<T> c_eff{gate * coef.re, gate * coef.im};
    Complex<T> adj = math::load_complex(p.chunk_adjoint, ci, false);
    for (int64_t j = r.length - 1; j >= 0; --j) {
      const T g = to_compute<T>(p.grad_y[sequence_index(p, b, step_in_chunk<kForward>(r, j), h, d)]);
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
    const T values[kPartialsPerNode] = {gate * sum_v[0].re,  -gate * sum_v[0].im,
                                        gate * sum_v[1].re,  -gate * sum_v[1].im,
                                        grad_a.re,           grad_a.im,
                                        math::real_product(c0, sum_v[0]) +
                                            math::real_product(c1, sum_v[1])};
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

// --- Workspace and launch sequences -------------------------------------------------

// Elements of the compute type each call needs as scratch.
template <class P>
LAPLACE_ATTN_HD int64_t chunk_buffer_elements(const P& p) {
  return num_passes(p) * p.batch * p.heads * p.nodes * num_chunks(p.length) * p.channels * 2;
}

template <class T, class A>
int64_t forward_workspace_elements(const LaplaceScanParams<T, A>& p) {
  return p.heads * p.nodes * 4 + chunk_buffer_elements(p);
}

template <class T, class A>
int64_t backward_workspace_elements(const LaplaceScanBackwardParams<T, A>& p) {
  return forward_workspace_elements(static_cast<const LaplaceScanParams<T, A>&>(p)) +
         chunk_buffer_elements(p) +
         kPartialsPerNode * p.batch * p.heads * p.nodes * num_groups(p.length) * p.channels;
}

template <class T, class A>
void assign_forward_workspace(LaplaceScanParams<T, A>& p, T* base) {
  p.chunk_pole = base;
  p.chunk_states = base + p.heads * p.nodes * 4;
}

template <class T, class A>
void assign_backward_workspace(LaplaceScanBackwardParams<T, A>& p, T* base) {
  LaplaceScanParams<T, A>& forward = p;
  assign_forward_workspace(forward, base);
  p.chunk_adjoint = base + forward_workspace_elements(forward);
  p.chunk_partials = p.chunk_adjoint + chunk_buffer_elements(p);
}

template <class Scan, class Launch, class P>
void launch_scan(Launch& launch, const P& p) {
  const int64_t BH = p.batch * p.heads, C = num_chunks(p.length);
  launch.template launch<ScanChunkSummaries<Scan>>(p, BH * C * p.channels);
  launch.template launch<ScanChunkCompose<Scan>>(p, BH * p.nodes * p.channels);
  launch.template launch<ScanChunkOutputs<Scan>>(p, BH * C * p.channels);
}

// p carries its workspace (assign_forward_workspace).
template <class Launch, class T, class A>
void launch_forward(Launch& launch, const LaplaceScanParams<T, A>& p) {
  launch.template launch<ScanChunkPowers>(p, p.heads * p.nodes);
  launch_scan<ForwardScan>(launch, p);
}

// p carries its workspace (assign_backward_workspace).
template <class Launch, class T, class A>
void launch_backward(Launch& launch, const LaplaceScanBackwardParams<T, A>& p) {
  const int64_t BH = p.batch * p.heads, C = num_chunks(p.length);
  launch.template launch<ScanChunkPowers>(p, p.heads * p.nodes);
  const bool params = wants_param_grads(p);
  if (wants_adjoint(p)) {
    launch_scan<AdjointScan>(launch, p);
  } else if (params && p.partial_pole) {
    // The pole's gradient needs the adjoint state entering every chunk.
    launch.template launch<ScanChunkSummaries<AdjointScan>>(p, BH * C * p.channels);
    launch.template launch<ScanChunkCompose<AdjointScan>>(p, BH * p.nodes * p.channels);
  }
  if (!params)
    return;
  LaplaceScanBackwardParams<T, A> q = p;
  q.track_gated_off = p.grad_gate != nullptr;
  // The forward states entering every chunk (not the outputs: y is not needed).
  q.final_fwd = nullptr;
  q.first_bwd = nullptr;
  launch.template launch<ScanChunkSummaries<ForwardScan>>(q, BH * C * p.channels);
  launch.template launch<ScanChunkCompose<ForwardScan>>(q, BH * p.nodes * p.channels);
  launch.template launch<ScanParamPartials>(
      q, BH * p.nodes * num_groups(p.length) * p.channels);
  launch.template launch<ScanReducePartials>(q, p.heads * p.nodes * p.channels);
  launch.template launch<ScanReduceNodes>(q, p.heads * p.nodes);
}

}  // namespace laplace_attn::gpu
