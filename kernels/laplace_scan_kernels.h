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

#include <cstdint>

#include "laplace_scan_chunks.h"
#include "laplace_scan_grad_kernels.h"

namespace laplace_attn::gpu {

using math::Complex;

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
  static constexpr const char* kName =
      Scan::kAdjoint ? "adjoint_chunk_summaries" : "scan_chunk_summaries";
  template <int kPass, class P>
  static LAPLACE_ATTN_HD void run_pass(const P& p, const ChunkThread<P>& t) {
    using T = typename P::compute_type;
    const ChunkRange r = chunk_range(p.length, t.c);
    for (int64_t k = 0; k < p.nodes; ++k) {
      const T gate = gate_of(p, t.b, t.h, k);
      if (!Scan::runs(p, gate))
        continue;
      Complex<T> s{T(0), T(0)};
      run_chunk<Scan, kPass>(p, Scan::input(p), t.b, t.h, t.d, r, s,
                             p.pole[(t.h * p.nodes + k) * 2], p.pole[(t.h * p.nodes + k) * 2 + 1],
                             gated_coefficient(p, kPass, t.h, k, t.d, gate), [](int64_t, T) {});
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
  static constexpr const char* kName =
      Scan::kAdjoint ? "adjoint_chunk_compose" : "scan_chunk_compose";
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
  static constexpr const char* kName =
      Scan::kAdjoint ? "adjoint_chunk_outputs" : "scan_chunk_outputs";
  template <int kPass, class P, class T>
  static LAPLACE_ATTN_HD void add_pass(const P& p, const ChunkThread<P>& t, ChunkRange r, T* acc) {
    for (int64_t k = 0; k < p.nodes; ++k) {
      const T gate = gate_of(p, t.b, t.h, k);
      if (gate == T(0))
        continue;
      Complex<T> s =
          math::load_complex(Scan::chunks(p), chunk_index(p, kPass, t.b, t.h, k, t.c, t.d), false);
      run_chunk<Scan, kPass>(p, Scan::input(p), t.b, t.h, t.d, r, s,
                             p.pole[(t.h * p.nodes + k) * 2], p.pole[(t.h * p.nodes + k) * 2 + 1],
                             gated_coefficient(p, kPass, t.h, k, t.d, gate),
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

// The state entering every chunk (and leaving the sequence) of both passes.
template <class Scan, class Launch, class P>
void launch_chunk_states(Launch& launch, const P& p) {
  const int64_t BH = p.batch * p.heads, C = num_chunks(p.length);
  launch.template launch<ScanChunkSummaries<Scan>>(p, BH * C * p.channels);
  launch.template launch<ScanChunkCompose<Scan>>(p, BH * p.nodes * p.channels);
}

template <class Scan, class Launch, class P>
void launch_scan(Launch& launch, const P& p) {
  launch_chunk_states<Scan>(launch, p);
  launch.template launch<ScanChunkOutputs<Scan>>(
      p, p.batch * p.heads * num_chunks(p.length) * p.channels);
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
  const int64_t BH = p.batch * p.heads;
  launch.template launch<ScanChunkPowers>(p, p.heads * p.nodes);
  const bool params = wants_param_grads(p);
  if (wants_adjoint(p)) {
    launch_scan<AdjointScan>(launch, p);
  } else if (params && p.partial_pole) {
    launch_chunk_states<AdjointScan>(launch, p);  // the pole's gradient reads them
  }
  if (!params)
    return;
  LaplaceScanBackwardParams<T, A> q = p;
  q.track_gated_off = p.grad_gate != nullptr;
  // The forward states entering every chunk (not the outputs: y is not needed).
  q.final_fwd = nullptr;
  q.first_bwd = nullptr;
  launch_chunk_states<ForwardScan>(launch, q);
  launch.template launch<ScanParamPartials>(q, BH * p.nodes * num_groups(p.length) * p.channels);
  launch.template launch<ScanReducePartials>(q, p.heads * p.nodes * p.channels);
  launch.template launch<ScanReduceNodes>(q, p.heads * p.nodes);
}

}  // namespace laplace_attn::gpu
