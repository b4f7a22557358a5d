// laplace_linear_attention inside the library: input checks, the chunked
// algorithm every backend runs, and the backward operator for autograd.
//
// Per batch b, head h and node k (pole a_k = exp(-decay_k - i freq_k), readout
// weight w_k = gate_k * c_k), with D_k x D_v complex states:
//
//   F_k(t) = a_k F_k(t-1) + k_t v_t^T          F_k(-1) = state_fwd
//   G_k(t) = a_k G_k(t+1) + k_t v_t^T          G_k(N)  = state_bwd
//   y_t    = sum_k Re(wf_k q_t^T F_k(t)) + Re(wb_k a_k q_t^T G_k(t+1))
//
// that is y_t = sum_s (q_t . k_s) K(t - s) v_s with the real lag kernel
// K(tau) = Re sum_k wf_k a_k^tau (tau >= 0) and Re sum_k wb_k a_k^-tau (tau < 0).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

#include "ops/internal_api.h"

namespace laplace_attn {

// Throws a c10::Error naming the argument and the expected shape, dtype or
// device unless the inputs describe a valid laplace_linear_attention call.
LAPLACE_ATTN_INTERNAL_API void check_laplace_linear_attention_inputs(
    const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd);

// Checks a state or state gradient of the [B, H, S, Dk, Dv, 2] shape.
LAPLACE_ATTN_INTERNAL_API void check_linear_attention_state(const char* op, const char* name,
                                                            const at::Tensor& t,
                                                            const at::Tensor& q,
                                                            const at::Tensor& v,
                                                            const at::Tensor& decay);

// Gradient outputs of _laplace_linear_attention_backward, in schema order.
enum LinearAttentionGrad {
  kLinGradQ = 0,
  kLinGradK,
  kLinGradV,
  kLinGradDecay,
  kLinGradFreq,
  kLinGradCFwd,
  kLinGradCBwd,
  kLinGradGate,
  kLinGradStateFwd,
  kLinGradStateBwd,
  kNumLinearAttentionGrads
};
using LinearAttentionGradMask = std::array<bool, kNumLinearAttentionGrads>;
using LinearAttentionGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                        at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The forward and backward, device-generic: chunks of kLinearAttentionChunk
// tokens, a masked GEMM with the lag kernel inside a chunk and a pass of the
// node states across chunks (laplace_linear_attention_chunks.cpp).
LAPLACE_ATTN_INTERNAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor>
laplace_linear_attention_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& decay, const at::Tensor& freq,
                                 const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
                                 const std::optional<at::Tensor>& gate,
                                 const std::optional<at::Tensor>& state_fwd,
                                 const std::optional<at::Tensor>& state_bwd, bool return_states);

// A causal call on one token with a given state, on the CPU: decoding, done in one pass
// over the state (laplace_linear_attention_decode.cpp). Same results as the chunked form.
bool is_linear_attention_decode_step(const at::Tensor& q, const std::optional<at::Tensor>& c_bwd,
                                     const std::optional<at::Tensor>& state_fwd);
std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention_decode_step(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& gate,
    const at::Tensor& state_fwd, bool return_states);

LAPLACE_ATTN_INTERNAL_API LinearAttentionGrads laplace_linear_attention_backward_chunked(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    LinearAttentionGradMask output_mask);

// Calls laplace_attn::_laplace_linear_attention_backward through the dispatcher.
LinearAttentionGrads laplace_linear_attention_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    LinearAttentionGradMask output_mask);

}  // namespace laplace_attn
