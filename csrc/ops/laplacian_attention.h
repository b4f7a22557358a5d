// laplacian_attention internals shared by its backends and its autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

#include "ops/internal_api.h"

namespace laplace_attn {

LAPLACE_ATTN_INTERNAL_API void check_laplacian_attention_inputs(
    const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k);

// The offsets of the packed keys: cu_seqlens_k, or cu_seqlens (self-attention).
inline const std::optional<at::Tensor>& key_offsets(const std::optional<at::Tensor>& cu_seqlens,
                                                    const std::optional<at::Tensor>& cu_seqlens_k) {
  return cu_seqlens_k ? cu_seqlens_k : cu_seqlens;
}

// (out, lse): the attention and log sum_j exp(-inv_lambda d_ij) per query row.
std::tuple<at::Tensor, at::Tensor> laplacian_attention_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& inv_lambda,
    const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k);

// (grad_q, grad_k, grad_v, grad_inv_lambda); unrequested ones are empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> laplacian_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k,
    const at::Tensor& out, const at::Tensor& lse, std::array<bool, 4> output_mask);

}  // namespace laplace_attn
