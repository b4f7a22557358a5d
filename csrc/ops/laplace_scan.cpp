// laplace_scan: operator schemas and the C++ entry point.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/laplace_scan_backward.h"

namespace laplace_attn {

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplace_scan", "")
                       .typed<decltype(laplace_scan)>();
  return op.call(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd);
}

LaplaceScanGrads laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, LaplaceScanGradMask output_mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplace_scan_backward", "")
                       .typed<decltype(laplace_scan_backward)>();
  return op.call(grad_y, grad_final_fwd, grad_first_bwd, u, decay, freq, c_fwd, c_bwd, gate,
                 state_fwd, state_bwd, output_mask);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "laplace_scan(Tensor u, Tensor decay, Tensor freq, Tensor c_fwd, Tensor? c_bwd=None, "
      "Tensor? gate=None, Tensor? state_fwd=None, Tensor? state_bwd=None) "
      "-> (Tensor y, Tensor final_fwd, Tensor first_bwd)");
  // The backward is an operator of its own so that torch.compile and
  // torch.export see it. Gradients of absent or unrequested inputs are empty.
  m.def(
      "_laplace_scan_backward(Tensor grad_y, Tensor? grad_final_fwd, Tensor? grad_first_bwd, "
      "Tensor u, Tensor decay, Tensor freq, Tensor c_fwd, Tensor? c_bwd, Tensor? gate, "
      "Tensor? state_fwd, Tensor? state_bwd, bool[8] output_mask) -> (Tensor grad_u, "
      "Tensor grad_decay, Tensor grad_freq, Tensor grad_c_fwd, Tensor grad_c_bwd, "
      "Tensor grad_gate, Tensor grad_state_fwd, Tensor grad_state_bwd)");
}

}  // namespace laplace_attn
