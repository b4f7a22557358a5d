// Autograd for laplace_scan: the backward calls the registered
// _laplace_scan_backward operator, which recomputes the states instead of
// storing them.
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "autograd/optional_of.h"
#include "laplace_attn/ops.h"
#include "ops/laplace_scan.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LaplaceScanFunction : public torch::autograd::Function<LaplaceScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& decay,
                               const at::Tensor& freq, const at::Tensor& c_fwd,
                               const std::optional<at::Tensor>& c_bwd,
                               const std::optional<at::Tensor>& gate,
                               const std::optional<at::Tensor>& state_fwd,
                               const std::optional<at::Tensor>& state_bwd,
                               const std::optional<at::Tensor>& cu_seqlens) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [y, final_fwd, first_bwd] =
        laplace_scan(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, cu_seqlens);
    ctx->save_for_backward({u, decay, freq, c_fwd, c_bwd.value_or(at::Tensor()),
                            gate.value_or(at::Tensor()), state_fwd.value_or(at::Tensor()),
                            state_bwd.value_or(at::Tensor()), cu_seqlens.value_or(at::Tensor())});
    return {y, final_fwd, first_bwd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& u = saved[0];
    LaplaceScanGradMask mask;
    // Autograd numbers only the tensors that were passed (None has no edge).
    size_t edge = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      mask[i] = saved[i].defined() && ctx->needs_input_grad(edge++);
    }
    const at::Tensor grad_y = grads[0].defined() ? grads[0] : at::zeros_like(u);
    auto result = laplace_scan_backward(grad_y, optional_of(grads[1]), optional_of(grads[2]), u,
                                        saved[1], saved[2], saved[3], optional_of(saved[4]),
                                        optional_of(saved[5]), optional_of(saved[6]),
                                        optional_of(saved[7]), optional_of(saved[8]), mask);
    variable_list out{std::get<0>(result), std::get<1>(result), std::get<2>(result),
                      std::get<3>(result), std::get<4>(result), std::get<5>(result),
                      std::get<6>(result), std::get<7>(result), at::Tensor()};
    // Absent or unrequested inputs get no gradient (the op returns empties).
    for (size_t i = 0; i < mask.size(); ++i) {
      if (!mask[i])
        out[i] = at::Tensor();
    }
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan_autograd(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const std::optional<at::Tensor>& cu_seqlens) {
  auto out = LaplaceScanFunction::apply(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd,
                                        cu_seqlens);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("laplace_scan", &laplace_scan_autograd);
}

}  // namespace laplace_attn
