// Autograd for gumbel_node_gate: the soft gradient for soft and hard gates
// alike (straight through); the noise is a sample and gets no gradient.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/gumbel_node_gate.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class GumbelNodeGateFunction : public torch::autograd::Function<GumbelNodeGateFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const std::optional<at::Tensor>& noise, double tau, bool hard,
                            bool training) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({logits, noise.value_or(at::Tensor())});
    ctx->saved_data["tau"] = tau;
    ctx->saved_data["training"] = training;
    return gumbel_node_gate(logits, noise, tau, hard, training);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& noise = saved[1];
    at::Tensor grad_logits = gumbel_node_gate_backward(
        grads[0], saved[0], noise.defined() ? std::optional<at::Tensor>(noise) : std::nullopt,
        ctx->saved_data["tau"].toDouble(), ctx->saved_data["training"].toBool());
    return {grad_logits, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor gumbel_node_gate_autograd(const at::Tensor& logits,
                                     const std::optional<at::Tensor>& noise, double tau, bool hard,
                                     bool training) {
  return GumbelNodeGateFunction::apply(logits, noise, tau, hard, training);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("gumbel_node_gate", &gumbel_node_gate_autograd);
}

}  // namespace laplace_attn
