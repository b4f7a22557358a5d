// Autograd for laplacian_attention: saves the output and the per-row
// log-normaliser (O(N)), and recomputes the weights in the backward.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/optional_of.h"
#include "laplace_attn/ops.h"
#include "ops/laplacian_attention.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LaplacianAttentionFunction : public torch::autograd::Function<LaplacianAttentionFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& inv_lambda,
                            const std::optional<at::Tensor>& key_padding_mask, bool causal,
                            const std::optional<at::Tensor>& cu_seqlens,
                            const std::optional<at::Tensor>& cu_seqlens_k) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = laplacian_attention_forward(q, k, v, inv_lambda, key_padding_mask, causal,
                                                  cu_seqlens, cu_seqlens_k);
    ctx->save_for_backward({q, k, v, inv_lambda, key_padding_mask.value_or(at::Tensor()), out, lse,
                            cu_seqlens.value_or(at::Tensor()),
                            cu_seqlens_k.value_or(at::Tensor())});
    ctx->saved_data["causal"] = causal;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const std::array<bool, 4> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   ctx->needs_input_grad(2), ctx->needs_input_grad(3)};
    auto [gq, gk, gv, gl] = laplacian_attention_backward(
        grads[0], s[0], s[1], s[2], s[3], optional_of(s[4]), ctx->saved_data["causal"].toBool(),
        optional_of(s[7]), optional_of(s[8]), s[5], s[6], mask);
    return {mask[0] ? gq : at::Tensor(),
            mask[1] ? gk : at::Tensor(),
            mask[2] ? gv : at::Tensor(),
            mask[3] ? gl : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor laplacian_attention_autograd(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& inv_lambda,
                                        const std::optional<at::Tensor>& key_padding_mask,
                                        bool causal, const std::optional<at::Tensor>& cu_seqlens,
                                        const std::optional<at::Tensor>& cu_seqlens_k) {
  TORCH_CHECK(!key_padding_mask || !key_padding_mask->requires_grad(),
              "laplacian_attention: a float key_padding_mask is a constant here; gradients with "
              "respect to it are not computed, so pass it detached (mask.detach())");
  return LaplacianAttentionFunction::apply(q, k, v, inv_lambda, key_padding_mask, causal,
                                           cu_seqlens, cu_seqlens_k);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("laplacian_attention", &laplacian_attention_autograd);
}

}  // namespace laplace_attn
