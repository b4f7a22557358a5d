// Shared definitions of laplacian_attention, the exact O(N)-memory attention
// with the L1 Laplacian kernel (SPEC 2.6):
//   out_i = sum_j k_ij v_j / sum_j k_ij,  k_ij = exp(-inv_lambda ||q_i - k_j||_1 + b_j),
// over the keys j that row i may see (causal: j <= i + M - N, the queries aligned
// with the last N keys, as in decoding; j <= i when N = M; and b_j > -inf). b is
// the key bias: 0 or -inf from a bool padding mask, a float mask as given.
//
// With s_ij = -inv_lambda d_ij + b_j the weights are softmax_j(s_ij), computed
// with the row maximum of s, so rows far from every key do not underflow to 0/0.
// The forward keeps
// lse_i = log sum_j exp(s_ij) for the backward, which recomputes the weights:
//   P_ij = exp(s_ij - lse_i),  dS_ij = P_ij (dO_i . v_j - dO_i . O_i),
//   dq_i = -inv_lambda sum_j dS_ij sign(q_i - k_j),
//   dk_j = +inv_lambda sum_i dS_ij sign(q_i - k_j),  dv_j = sum_i P_ij dO_i,
//   d inv_lambda = -sum_ij dS_ij d_ij.
// A row that sees no key at all returns zeros (and lse = -inf).
#pragma once

#include <cstdint>

#include "common.h"

namespace laplace_attn {

// T: the compute type; A: the storage type of q, k, v, the output and their
// gradients (T, or a 16-bit storage read and written in place).
template <class T, class A = T>
struct LaplacianAttentionParams {
  using compute_type = T;
  using activation_type = A;

  int64_t batch = 0, heads = 0, queries = 0, keys = 0, dim = 0, value_dim = 0;
  bool causal = false;
  const A* q = nullptr;    // [B, H, N, D], D padded like laplacian_kernel (CPU)
  const A* k = nullptr;    // [B, H, M, D], rows contiguous, heads k_head_stride apart
  const A* k_t = nullptr;  // [B, H, D, M padded]: k transposed (CPU forward), or null
  const A* v = nullptr;    // [B, H, M, E], E padded (CPU), heads v_head_stride apart
  // Elements from one (b, h) to the next: M * D and M * E when contiguous; more when
  // k and v are the first M rows of a longer buffer (a decoding cache), read in place.
  int64_t k_head_stride = 0, v_head_stride = 0;
  const T* inv_lambda = nullptr;  // [H]
  const T* key_bias = nullptr;    // [B, M], added to the logits, -inf = padded; null = none
  A* out = nullptr;               // [B, H, N, E]
  T* lse = nullptr;               // [B, H, N], written by the forward

  // Backward
  const T* saved_lse = nullptr;  // [B, H, N], the forward's lse
  const A* grad_out = nullptr;   // [B, H, N, E]
  const A* saved_out = nullptr;  // [B, H, N, E], the forward's output (for delta), or null
  T* delta = nullptr;   // [B, H, N]: dO_i . O_i, computed from saved_out when that is given
  A* grad_q = nullptr;  // [B, H, N, D]
  A* grad_k = nullptr;  // [B, H, M, D]
  A* grad_v = nullptr;  // [B, H, M, E]
  T* row_grad_lambda = nullptr;  // [B, H, N]: -sum_j dS_ij d_ij

  // Scratch of the CUDA forward (laplacian_attention_kernels.h), which splits
  // the keys of a row into key_splits ranges and merges their partial sums.
  int64_t key_splits = 1;
  T* partial_out = nullptr;  // [key_splits, B, H, N, E]
  T* partial_max = nullptr;  // [key_splits, B, H, N]: the range's largest logit (the merge
                             // turns it into the range's weight)
  T* partial_sum = nullptr;  // [key_splits, B, H, N]: sum_j exp(s_ij - max)
};

// Key j and value j of the (batch, head) pair bh.
template <class P>
LAPLACE_ATTN_HD const typename P::activation_type* key_row(const P& p, int64_t bh, int64_t j) {
  return p.k + bh * p.k_head_stride + j * p.dim;
}

template <class P>
LAPLACE_ATTN_HD const typename P::activation_type* value_row(const P& p, int64_t bh, int64_t j) {
  return p.v + bh * p.v_head_stride + j * p.value_dim;
}

namespace math {

// Causal attention aligns the N queries with the last N of the M keys (bottom
// right): query i sees keys up to i + M - N.
template <class P>
LAPLACE_ATTN_HD bool causally_visible(const P& p, int64_t i, int64_t j) {
  return !p.causal || j <= i + (p.keys - p.queries);
}

// The first query that key j is causally visible to.
template <class P>
LAPLACE_ATTN_HD int64_t first_query_seeing(const P& p, int64_t j) {
  const int64_t first = j - (p.keys - p.queries);
  return p.causal && first > 0 ? first : 0;
}

}  // namespace math
}  // namespace laplace_attn
