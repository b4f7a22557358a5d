// laplace_attn: the public C++ API.
//
// Every function dispatches through the PyTorch dispatcher, so it picks the CPU
// or CUDA kernel from its inputs' device and records autograd when an input
// requires grad. Link the op library (liblaplace_attn.so) to use it; no Python
// is involved. The math and shapes are documented in docs/ and SPEC.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "laplace_attn/build_info.h"

namespace laplace_attn {

// Fused bilateral Laplace scan with readout (SPEC 2.1).
//
//   u [B, N, H, D]; decay, freq [H, S] (decay >= 0); c_fwd, c_bwd [H, S, D, 2];
//   gate [B, H, S]; state_fwd, state_bwd [B, H, S, D, 2].
//
// Returns (y [B, N, H, D], final_fwd, first_bwd), the states after the last token
// of the causal scan and at the first token of the anticausal scan, so a long
// sequence can be processed in chunks. The scan is bilateral iff c_bwd is given;
// for a causal scan first_bwd is zeros. A node whose gate is exactly 0 is
// switched off: it costs nothing, contributes nothing and its state passes
// through unchanged.
//
// Packed variable-length batches: with cu_seqlens (int32 [num_sequences + 1],
// offsets into N from 0 to N), u is [1, N, H, D] holding the sequences back to
// back; both recurrences restart at every boundary, and gate, the states and the
// returned states are per sequence, [num_sequences, ...].
LAPLACE_ATTN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd = std::nullopt,
    const std::optional<at::Tensor>& gate = std::nullopt,
    const std::optional<at::Tensor>& state_fwd = std::nullopt,
    const std::optional<at::Tensor>& state_bwd = std::nullopt,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Linear attention under learnable Laplace decays: per node k of a head a
// complex [Dk, Dv] state F_k(t) = a_k F_k(t-1) + k_t v_t^T (and G_k(t) from the
// right when c_bwd is given), read out as
//   y_t = sum_k gate_k [Re(c_fwd_k q_t^T F_k(t)) + Re(c_bwd_k a_k q_t^T G_k(t+1))].
//
//   q, k [B, N, H, Dk]; v [B, N, H, Dv]; decay, freq [H, S] (decay >= 0);
//   c_fwd, c_bwd [H, S, 2]; gate [B, H, S]; state_fwd, state_bwd [B, H, S, Dk, Dv, 2].
//
// Returns (y [B, N, H, Dv], final_fwd = F(N-1), first_bwd = G(0)); first_bwd
// is zeros without c_bwd; with return_states = false both are empty ([0]) and
// never formed (what training on short sequences wants: a state is S*Dk*Dv
// complex numbers per head). Chunked: O(N*S*Dk*Dv) time, O(N*D + S*Dk*Dv) memory.
LAPLACE_ATTN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd = std::nullopt,
    const std::optional<at::Tensor>& gate = std::nullopt,
    const std::optional<at::Tensor>& state_fwd = std::nullopt,
    const std::optional<at::Tensor>& state_bwd = std::nullopt, bool return_states = true);

// Materialised STLT coefficients (SPEC 2.2): for u [B, N, H, P] returns
// [B, N, H, S, P, 2], the complex F_n (causal) or F_n + G_n - u_n (bilateral) of
// every node, with optional initial states [B, H, S, P, 2]. O(N*S*P) memory: for
// short sequences, the relevance mode and plots.
LAPLACE_ATTN_API at::Tensor laplace_transform(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, bool bilateral = true,
    const std::optional<at::Tensor>& state_fwd = std::nullopt,
    const std::optional<at::Tensor>& state_bwd = std::nullopt);

// Adaptive node allocation (SPEC 2.3): binary Concrete gates from logits [..., S].
// Training: sigmoid((logits + log U - log(1 - U)) / tau) with U = noise ~
// Uniform(0, 1) (no noise if None); eval: sigmoid(logits / tau). hard = true
// gives 1[z > 0] forward with the soft gradient backward (straight through).
LAPLACE_ATTN_API at::Tensor gumbel_node_gate(const at::Tensor& logits,
                                             const std::optional<at::Tensor>& noise, double tau,
                                             bool hard, bool training);

// The L1 Laplacian kernel (SPEC 2.4): K[b, h, i, j] = exp(-inv_lambda *
// ||x1[b, h, i] - x2[b, h, j]||_1) for x1 [B, H, N, D], x2 [B, H, M, D] and
// inv_lambda a scalar (0-D) or [H], all differentiable. Fused: no [N, M, D]
// difference tensor exists, forward or backward.
LAPLACE_ATTN_API at::Tensor laplacian_kernel(const at::Tensor& x1, const at::Tensor& x2,
                                             const at::Tensor& inv_lambda);

// Z ~ A^-1 for A [..., m, m] by Newton-Schulz iteration (SPEC 2.5): order 2
// (Z <- 2Z - ZAZ) or 3 (Nystromformer's), per-matrix initial scaling
// Z0 = A^T / (||A||_1 ||A||_inf), optional ridge (A + ridge * I). Iterates in
// float64 for every dtype; a matrix keeps its last iterate when a step would
// raise ||I - AZ||, so the result is finite for any finite A. For nearly
// singular A a few iterations approximate the pseudo-inverse; many amplify the
// null directions (a ridge prevents that). Backward: that of the exact inverse,
// dA = -Z^T G Z^T.
LAPLACE_ATTN_API at::Tensor newton_schulz_inverse(const at::Tensor& A, int64_t iters = 6,
                                                  int64_t order = 3, double ridge = 0.0);

// Exact attention with the L1 Laplacian kernel (SPEC 2.6): out_i = sum_j k_ij v_j /
// sum_j k_ij with k_ij = exp(-inv_lambda ||q_i - k_j||_1 + b_j), over keys that are
// not padded and, when causal, j <= i + M - N (the queries are the last N
// positions, as in decoding; j <= i when N = M). key_padding_mask [B, M] is bool (true =
// padded) or floating point: b = the mask, added to the logits as
// nn.MultiheadAttention adds a float mask (-inf = padded; no gradient).
// q [B, H, N, D], k [B, H, M, D], v [B, H, M, E]; O(N) memory; rows are
// rescaled by their maximum logit, so far-away rows do not become 0/0; a row
// with no visible key returns zeros. inv_lambda must be finite and >= 0.
//
// Packed variable-length batches: with cu_seqlens (int32 [num_sequences + 1]
// offsets into N), q, k, v hold the sequences back to back in batch 1 and each
// query sees only the keys of its own sequence; cu_seqlens_k gives the keys'
// offsets when they differ from the queries' (causal alignment is then per
// sequence, bottom-right). key_padding_mask is then [1, M] over the packed keys.
LAPLACE_ATTN_API at::Tensor laplacian_attention(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& inv_lambda,
    const std::optional<at::Tensor>& key_padding_mask = std::nullopt, bool causal = false,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt,
    const std::optional<at::Tensor>& cu_seqlens_k = std::nullopt);

// Nystrom attention (SPEC 2.7) with num_landmarks masked segment means:
// out = Norm(C_q) NS^-1(Norm(W)) (Norm(C_k) V), kernel "laplacian" (needs
// inv_lambda) or "softmax" (Nystromformer), normalization "row" or "injective".
// Self-attention: q, k [B, H, N, D], v [B, H, N, E]. Exact when num_landmarks >= N
// (row normalisation); never NaN with padding. With cu_seqlens (packed sequences
// in batch 1, row normalisation) every sequence has its own num_landmarks
// segments and sees only itself.
LAPLACE_ATTN_API at::Tensor nystrom_attention(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t num_landmarks,
    const std::string& kernel = "laplacian",
    const std::optional<at::Tensor>& inv_lambda = std::nullopt,
    const std::string& normalization = "row", int64_t iters = 6,
    const std::optional<at::Tensor>& key_padding_mask = std::nullopt,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

}  // namespace laplace_attn
