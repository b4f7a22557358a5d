// laplacian_attention: operator schemas, input checks and the C++ entry points.
//
// The public operator returns the attention; the internal forward also returns
// the per-row log-normaliser the backward needs. The public operator is a
// composite of the internal one below autograd, and has its own autograd.
#include "ops/laplacian_attention.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/dtype_policy.h"
#include "ops/packed_sequences.h"

namespace laplace_attn {

void check_laplacian_attention_inputs(const char* op, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& inv_lambda,
                                      const std::optional<at::Tensor>& key_padding_mask,
                                      const std::optional<at::Tensor>& cu_seqlens,
                                      const std::optional<at::Tensor>& cu_seqlens_k) {
  const auto t = q.scalar_type();
  TORCH_CHECK(is_activation_dtype(t), op,
              ": expected q of dtype float32, float64, bfloat16 or float16, but got ", t);
  TORCH_CHECK(q.dim() == 4, op, ": expected q of shape [B, H, N, D] (4-D), but got ", q.dim(),
              "-D shape ", q.sizes());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3);
  TORCH_CHECK(k.dim() == 4 && k.size(0) == B && k.size(1) == H && k.size(3) == D, op,
              ": expected k of shape [B, H, M, D] = [", B, ", ", H, ", M, ", D, "], but got ",
              k.sizes());
  TORCH_CHECK(v.dim() == 4 && v.size(0) == B && v.size(1) == H && v.size(2) == k.size(2), op,
              ": expected v of shape [B, H, M, E] = [", B, ", ", H, ", ", k.size(2),
              ", E], but got ", v.sizes());
  TORCH_CHECK(inv_lambda.dim() == 0 || (inv_lambda.dim() == 1 && inv_lambda.size(0) == H), op,
              ": expected inv_lambda to be a scalar (0-D) or of shape [H] = [", H, "], but got ",
              inv_lambda.sizes());
  for (const auto& [name, other] : {std::pair{"k", &k}, {"v", &v}}) {
    TORCH_CHECK(other->device() == q.device(), op, ": expected ", name, " on ", q.device(),
                " (the device of q), but got ", other->device());
    TORCH_CHECK(other->scalar_type() == t, op, ": expected ", name, " of dtype ", t,
                " (the dtype of q), but got ", other->scalar_type());
  }
  check_param_dtype(op, "inv_lambda", inv_lambda, q, "q");
  if (key_padding_mask) {
    TORCH_CHECK(key_padding_mask->scalar_type() == at::kBool ||
                    at::isFloatingType(key_padding_mask->scalar_type()),
                op,
                ": expected key_padding_mask of dtype bool (True = padded) or floating point "
                "(added to the logits), but got ",
                key_padding_mask->scalar_type());
    TORCH_CHECK(key_padding_mask->dim() == 2 && key_padding_mask->size(0) == B &&
                    key_padding_mask->size(1) == k.size(2),
                op, ": expected key_padding_mask of shape [B, M] = [", B, ", ", k.size(2),
                "], but got ", key_padding_mask->sizes());
    TORCH_CHECK(key_padding_mask->device() == q.device(), op, ": expected key_padding_mask on ",
                q.device(), ", but got ", key_padding_mask->device());
  }
  TORCH_CHECK(cu_seqlens || !cu_seqlens_k, op,
              ": cu_seqlens_k was given without cu_seqlens; pass the offsets of the packed "
              "queries as cu_seqlens");
  if (cu_seqlens) {
    const int64_t n = packed_sequence_count(op, "cu_seqlens", *cu_seqlens, "q", q, q);
    if (cu_seqlens_k) {
      const int64_t n_k = packed_sequence_count(op, "cu_seqlens_k", *cu_seqlens_k, "k", k, q);
      TORCH_CHECK(n_k == n, op, ": expected cu_seqlens_k to describe as many sequences as ",
                  "cu_seqlens (", n, "), but it describes ", n_k);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> laplacian_attention_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& inv_lambda,
    const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplacian_attention_forward", "")
                       .typed<decltype(laplacian_attention_forward)>();
  return op.call(q, k, v, inv_lambda, key_padding_mask, causal, cu_seqlens, cu_seqlens_k);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> laplacian_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k,
    const at::Tensor& out, const at::Tensor& lse, std::array<bool, 4> output_mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplacian_attention_backward", "")
                       .typed<decltype(laplacian_attention_backward)>();
  return op.call(grad_out, q, k, v, inv_lambda, key_padding_mask, causal, cu_seqlens, cu_seqlens_k,
                 out, lse, output_mask);
}

at::Tensor laplacian_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& inv_lambda,
                               const std::optional<at::Tensor>& key_padding_mask, bool causal,
                               const std::optional<at::Tensor>& cu_seqlens,
                               const std::optional<at::Tensor>& cu_seqlens_k) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplacian_attention", "")
                       .typed<decltype(laplacian_attention)>();
  return op.call(q, k, v, inv_lambda, key_padding_mask, causal, cu_seqlens, cu_seqlens_k);
}

namespace {

at::Tensor laplacian_attention_composite(const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const at::Tensor& inv_lambda,
                                         const std::optional<at::Tensor>& key_padding_mask,
                                         bool causal, const std::optional<at::Tensor>& cu_seqlens,
                                         const std::optional<at::Tensor>& cu_seqlens_k) {
  return std::get<0>(laplacian_attention_forward(q, k, v, inv_lambda, key_padding_mask, causal,
                                                 cu_seqlens, cu_seqlens_k));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "laplacian_attention(Tensor q, Tensor k, Tensor v, Tensor inv_lambda, "
      "Tensor? key_padding_mask=None, bool causal=False, Tensor? cu_seqlens=None, "
      "Tensor? cu_seqlens_k=None) -> Tensor");
  m.def(
      "_laplacian_attention_forward(Tensor q, Tensor k, Tensor v, Tensor inv_lambda, "
      "Tensor? key_padding_mask, bool causal, Tensor? cu_seqlens, Tensor? cu_seqlens_k) "
      "-> (Tensor out, Tensor lse)");
  m.def(
      "_laplacian_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, "
      "Tensor inv_lambda, Tensor? key_padding_mask, bool causal, Tensor? cu_seqlens, "
      "Tensor? cu_seqlens_k, Tensor out, Tensor lse, "
      "bool[4] output_mask) -> (Tensor grad_q, Tensor grad_k, Tensor grad_v, "
      "Tensor grad_inv_lambda)");
}

TORCH_LIBRARY_IMPL(laplace_attn, CompositeExplicitAutograd, m) {
  m.impl("laplacian_attention", &laplacian_attention_composite);
}

}  // namespace laplace_attn
