// laplacian_attention's CUDA kernel bodies and launch sequences (the form of
// kernels/launch.h), run on a GPU by laplacian_attention.cu and on the CPU by
// the tests' launch emulator.
//
// Forward, flash-decoding style: thread (split, b, h, i) runs the keys of one
// key range for query row i with a running maximum (rescaling its sums when the
// maximum rises) and stores its partial sums; thread (b, h, i) merges the
// ranges in a fixed order into the output and the row's lse. Short sequences
// use one range; long ones with few rows split the keys until the GPU is full.
// Backward: thread (b, h, i) owns dq_i and the row's share of d inv_lambda,
// thread (b, h, j) owns dk_j and dv_j, each recomputing the weights from lse:
// one writer per output, deterministic. Output rows are accumulated in
// registers kDimBlock values at a time (wider rows take several passes), so
// 16-bit outputs are rounded once and no float32 copy of them exists.
#pragma once

#include <cmath>
#include <cstdint>

#include "laplacian_attention_math.h"
#include "launch.h"

namespace laplace_attn::gpu {

constexpr int64_t kDimBlock = 32;          // output values a thread accumulates at once
constexpr int64_t kMinKeysPerSplit = 64;   // a key range is never shorter
constexpr int64_t kTargetThreads = 65536;  // split keys until this many threads run

// The number of key ranges per row: enough threads to fill a GPU.
LAPLACE_ATTN_HD int64_t key_splits_for(int64_t rows, int64_t keys) {
  if (rows <= 0 || keys <= kMinKeysPerSplit)
    return 1;
  const int64_t wanted = ceil_div(kTargetThreads, rows);
  const int64_t most = ceil_div(keys, kMinKeysPerSplit);
  return wanted < most ? (wanted < 1 ? 1 : wanted) : most;
}

template <class P>
struct AttentionRow {
  int64_t bh, b, i;  // row = bh * N + i
  LAPLACE_ATTN_HD AttentionRow(const P& p, int64_t row)
      : bh(row / p.queries), b(row / p.queries / p.heads), i(row % p.queries) {}
};

template <class P, class T>
LAPLACE_ATTN_HD T key_bias_of(const P& p, int64_t b, int64_t j) {
  return p.key_bias == nullptr ? T(0) : p.key_bias[b * p.keys + j];
}

template <class P>
LAPLACE_ATTN_HD bool visible(const P& p, int64_t b, int64_t i, int64_t j) {
  using T = typename P::compute_type;
  return math::causally_visible(p, i, j) && key_bias_of<P, T>(p, b, j) != -INFINITY;
}

// sum_d |x_d - y_d| over rows of storage type A.
template <class T, class A>
LAPLACE_ATTN_HD T l1_distance(const A* x, const A* y, int64_t D) {
  T s = T(0);
  for (int64_t d = 0; d < D; ++d)
    s += fabs(to_compute<T>(x[d]) - to_compute<T>(y[d]));
  return s;
}

template <class T, class A>
LAPLACE_ATTN_HD T dot(const A* x, const A* y, int64_t E) {
  T s = T(0);
  for (int64_t e = 0; e < E; ++e)
    s += to_compute<T>(x[e]) * to_compute<T>(y[e]);
  return s;
}

// The logit s_ij = -inv_lambda ||q_i - k_j||_1 + b_j.
template <class P, class T>
LAPLACE_ATTN_HD T logit(const P& p, int64_t bh, int64_t b, int64_t i, int64_t j, T lam) {
  const int64_t D = p.dim;
  return -lam * l1_distance<T>(p.q + (bh * p.queries + i) * D, key_row(p, bh, j), D) +
         key_bias_of<P, T>(p, b, j);
}

// Thread (split, row): partial sums of one key range.
struct AttentionForwardSplit {
  static constexpr const char* kName = "attention_forward_split";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t thread) {
    using T = typename P::compute_type;
    const int64_t rows = p.batch * p.heads * p.queries, E = p.value_dim;
    const int64_t split = thread / rows, row = thread % rows;
    const AttentionRow<P> r(p, row);
    const T lam = p.inv_lambda[r.bh % p.heads];
    const int64_t per_split = ceil_div(p.keys, p.key_splits);
    const int64_t j_begin = split * per_split;
    const int64_t j_end = j_begin + per_split < p.keys ? j_begin + per_split : p.keys;
    T* out = p.partial_out + thread * E;
    T s_max = -INFINITY, sum = T(0);
    for (int64_t e0 = 0; e0 < E || (E == 0 && e0 == 0); e0 += kDimBlock) {
      const int64_t width = E - e0 < kDimBlock ? E - e0 : kDimBlock;
      T acc[kDimBlock];
      for (int64_t e = 0; e < kDimBlock; ++e)
        acc[e] = T(0);
      s_max = -INFINITY;
      sum = T(0);
      for (int64_t j = j_begin; j < j_end; ++j) {
        if (!visible(p, r.b, r.i, j))
          continue;
        const T s = logit(p, r.bh, r.b, r.i, j, lam);
        if (s > s_max) {  // rescale what was summed under the old maximum
          const T rescale = s_max == -INFINITY ? T(0) : exp(s_max - s);
          for (int64_t e = 0; e < width; ++e)
            acc[e] *= rescale;
          sum *= rescale;
          s_max = s;
        }
        const T w = exp(s - s_max);
        sum += w;
        const auto* vj = value_row(p, r.bh, j) + e0;
        for (int64_t e = 0; e < width; ++e)
          acc[e] += w * to_compute<T>(vj[e]);
      }
      for (int64_t e = 0; e < width; ++e)
        out[e0 + e] = acc[e];
    }
    p.partial_max[thread] = s_max;
    p.partial_sum[thread] = sum;
  }
};

// Thread row: the key ranges merged in order; out = acc / sum, lse = max + log sum.
struct AttentionForwardMerge {
  static constexpr const char* kName = "attention_forward_merge";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t row) {
    using T = typename P::compute_type;
    using A = typename P::activation_type;
    const int64_t rows = p.batch * p.heads * p.queries, E = p.value_dim;
    T s_max = -INFINITY;
    for (int64_t s = 0; s < p.key_splits; ++s)
      s_max = p.partial_max[s * rows + row] > s_max ? p.partial_max[s * rows + row] : s_max;
    A* out = p.out + row * E;
    if (s_max == -INFINITY) {  // the row sees no key
      for (int64_t e = 0; e < E; ++e)
        out[e] = from_compute<A>(T(0));
      p.lse[row] = -INFINITY;
      return;
    }
    // Each range's weight exp(max_s - max), formed once; this thread owns the
    // row's partial maxima, so the weight replaces the maximum in place.
    T sum = T(0);
    for (int64_t s = 0; s < p.key_splits; ++s) {
      T& m = p.partial_max[s * rows + row];
      m = m == -INFINITY ? T(0) : exp(m - s_max);
      sum += p.partial_sum[s * rows + row] * m;
    }
    for (int64_t e = 0; e < E; ++e) {
      T value = T(0);
      for (int64_t s = 0; s < p.key_splits; ++s)
        value += p.partial_out[(s * rows + row) * E + e] * p.partial_max[s * rows + row];
      out[e] = from_compute<A>(value / sum);
    }
    p.lse[row] = s_max + log(sum);
  }
};

// Thread row: delta_i = dO_i . O_i from the saved output.
struct AttentionRowDeltas {
  static constexpr const char* kName = "attention_row_deltas";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t row) {
    using T = typename P::compute_type;
    const int64_t E = p.value_dim;
    p.delta[row] = dot<T>(p.grad_out + row * E, p.saved_out + row * E, E);
  }
};

// dS_ij = P_ij (dO_i . v_j - delta_i), with P_ij from the saved lse.
template <class P, class T>
LAPLACE_ATTN_HD T weight_grad(const P& p, int64_t bh, int64_t row, int64_t j, T prob) {
  const int64_t E = p.value_dim;
  return prob * (dot<T>(p.grad_out + row * E, value_row(p, bh, j), E) - p.delta[row]);
}

// Thread row: dq_i and the row's share of d inv_lambda.
struct AttentionBackwardQueries {
  static constexpr const char* kName = "attention_backward_queries";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t row) {
    using T = typename P::compute_type;
    using A = typename P::activation_type;
    const AttentionRow<P> r(p, row);
    const int64_t D = p.dim;
    const T lam = p.inv_lambda[r.bh % p.heads], lse = p.saved_lse[row];
    const auto* qi = p.q + row * D;
    T lambda_sum = T(0);
    for (int64_t d0 = 0; d0 < D || (D == 0 && d0 == 0); d0 += kDimBlock) {
      const int64_t width = D - d0 < kDimBlock ? D - d0 : kDimBlock;
      T acc[kDimBlock];
      for (int64_t d = 0; d < kDimBlock; ++d)
        acc[d] = T(0);
      for (int64_t j = 0; lse != -INFINITY && j < p.keys; ++j) {
        if (!visible(p, r.b, r.i, j))
          continue;
        const auto* kj = key_row(p, r.bh, j);
        const T dist = l1_distance<T>(qi, kj, D);
        const T ds =
            weight_grad(p, r.bh, row, j, exp(-lam * dist + key_bias_of<P, T>(p, r.b, j) - lse));
        for (int64_t d = 0; d < width; ++d)
          acc[d] -= lam * ds * math::sign_of(to_compute<T>(qi[d0 + d]) - to_compute<T>(kj[d0 + d]));
        if (d0 == 0)
          lambda_sum -= ds * dist;
      }
      for (int64_t d = 0; d < width; ++d)
        p.grad_q[row * D + d0 + d] = from_compute<A>(acc[d]);
    }
    if (p.row_grad_lambda)
      p.row_grad_lambda[row] = lambda_sum;
  }
};

// Thread (b, h, j): dk_j and dv_j.
struct AttentionBackwardKeys {
  static constexpr const char* kName = "attention_backward_keys";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t key) {
    using T = typename P::compute_type;
    using A = typename P::activation_type;
    const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
    const int64_t bh = key / M, j = key % M, b = bh / p.heads;
    const T lam = p.inv_lambda[bh % p.heads];
    const auto* kj = key_row(p, bh, j);
    // dk then dv, each in blocks of kDimBlock values held in registers.
    for (int64_t pass = 0; pass < 2; ++pass) {
      const int64_t width_all = pass == 0 ? D : E;
      for (int64_t c0 = 0; c0 < width_all; c0 += kDimBlock) {
        const int64_t width = width_all - c0 < kDimBlock ? width_all - c0 : kDimBlock;
        T acc[kDimBlock];
        for (int64_t c = 0; c < kDimBlock; ++c)
          acc[c] = T(0);
        for (int64_t i = math::first_query_seeing(p, j); i < N; ++i) {
          const int64_t row = bh * N + i;
          if (!visible(p, b, i, j) || p.saved_lse[row] == -INFINITY)
            continue;
          const auto* qi = p.q + row * D;
          const T prob = exp(logit(p, bh, b, i, j, lam) - p.saved_lse[row]);
          if (pass == 0) {
            const T ds = weight_grad(p, bh, row, j, prob);
            for (int64_t c = 0; c < width; ++c)
              acc[c] +=
                  lam * ds * math::sign_of(to_compute<T>(qi[c0 + c]) - to_compute<T>(kj[c0 + c]));
          } else {
            for (int64_t c = 0; c < width; ++c)
              acc[c] += prob * to_compute<T>(p.grad_out[row * E + c0 + c]);
          }
        }
        A* out = pass == 0 ? p.grad_k + key * D : p.grad_v + key * E;
        for (int64_t c = 0; c < width; ++c)
          out[c0 + c] = from_compute<A>(acc[c]);
      }
    }
  }
};

// --- Workspace and launch sequences -------------------------------------------------

template <class T, class A>
int64_t forward_workspace_elements(const LaplacianAttentionParams<T, A>& p) {
  const int64_t rows = p.batch * p.heads * p.queries;
  return key_splits_for(rows, p.keys) * rows * (p.value_dim + 2);
}

template <class T, class A>
void assign_forward_workspace(LaplacianAttentionParams<T, A>& p, T* base) {
  const int64_t rows = p.batch * p.heads * p.queries;
  p.key_splits = key_splits_for(rows, p.keys);
  p.partial_out = base;
  p.partial_max = base + p.key_splits * rows * p.value_dim;
  p.partial_sum = p.partial_max + p.key_splits * rows;
}

template <class Launch, class T, class A>
void launch_forward(Launch& launch, const LaplacianAttentionParams<T, A>& p) {
  const int64_t rows = p.batch * p.heads * p.queries;
  launch.template launch<AttentionForwardSplit>(p, p.key_splits * rows);
  launch.template launch<AttentionForwardMerge>(p, rows);
}

template <class Launch, class T, class A>
void launch_backward(Launch& launch, const LaplacianAttentionParams<T, A>& p) {
  const int64_t rows = p.batch * p.heads * p.queries;
  if (p.saved_out)
    launch.template launch<AttentionRowDeltas>(p, rows);
  if (p.grad_q || p.row_grad_lambda)  // grad_q is null when D = 0
    launch.template launch<AttentionBackwardQueries>(p, rows);
  if (p.grad_k || p.grad_v)  // grad_k is null when D = 0
    launch.template launch<AttentionBackwardKeys>(p, p.batch * p.heads * p.keys);
}

}  // namespace laplace_attn::gpu
