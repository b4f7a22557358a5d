// Autograd for laplace_linear_attention: the backward calls the registered
// _laplace_linear_attention_backward operator, which recomputes the states
// chunk by chunk instead of storing them.
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/optional_of.h"
#include "laplace_attn/ops.h"
#include "ops/laplace_linear_attention.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LaplaceLinearAttentionFunction
    : public torch::autograd::Function<LaplaceLinearAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq,
                               const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
                               const std::optional<at::Tensor>& gate,
                               const std::optional<at::Tensor>& state_fwd,
                               const std::optional<at::Tensor>& state_bwd, bool return_states) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [y, final_fwd, first_bwd] = laplace_linear_attention(
        q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, return_states);
    ctx->save_for_backward({q, k, v, decay, freq, c_fwd, c_bwd.value_or(at::Tensor()),
                            gate.value_or(at::Tensor()), state_fwd.value_or(at::Tensor()),
                            state_bwd.value_or(at::Tensor())});
    // Unused outputs pass no gradient (not zeros): the backward then skips the
    // state terms, and no gradient exists for states that were not formed.
    ctx->set_materialize_grads(false);
    ctx->saved_data["return_states"] = return_states;
    return {y, final_fwd, first_bwd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    LinearAttentionGradMask mask;
    // Autograd numbers only the tensors that were passed (None has no edge).
    size_t edge = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      mask[i] = saved[i].defined() && ctx->needs_input_grad(edge++);
    }
    const at::Tensor& v = saved[2];
    const at::Tensor grad_y = grads[0].defined() ? grads[0] : at::zeros_like(v);
    const bool states = ctx->saved_data["return_states"].toBool();
    auto result = laplace_linear_attention_backward(
        grad_y, states ? optional_of(grads[1]) : std::nullopt,
        states ? optional_of(grads[2]) : std::nullopt, saved[0], saved[1], v, saved[3], saved[4],
        saved[5], optional_of(saved[6]), optional_of(saved[7]), optional_of(saved[8]),
        optional_of(saved[9]), mask);
    variable_list out{std::get<0>(result), std::get<1>(result), std::get<2>(result),
                      std::get<3>(result), std::get<4>(result), std::get<5>(result),
                      std::get<6>(result), std::get<7>(result), std::get<8>(result),
                      std::get<9>(result)};
    // Absent or unrequested inputs get no gradient (the op returns empties).
    for (size_t i = 0; i < out.size(); ++i) {
      if (!mask[i])
        out[i] = at::Tensor();
    }
    out.emplace_back();  // return_states
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention_autograd(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, bool return_states) {
  auto out = LaplaceLinearAttentionFunction::apply(q, k, v, decay, freq, c_fwd, c_bwd, gate,
                                                   state_fwd, state_bwd, return_states);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("laplace_linear_attention", &laplace_linear_attention_autograd);
}

}  // namespace laplace_attn
