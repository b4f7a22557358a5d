// gumbel_node_gate: operator schemas, input checks and the C++ entry point.
#include "ops/gumbel_node_gate.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <torch/library.h>
#include <cmath>

#include "laplace_attn/ops.h"

namespace laplace_attn {

void check_gumbel_node_gate_inputs(const char* op, const at::Tensor& logits,
                                   const std::optional<at::Tensor>& noise, double tau) {
  const auto t = logits.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf, op,
              ": expected logits of dtype float32, float64, bfloat16 or float16, but got ", t);
  TORCH_CHECK(tau > 0 && std::isfinite(tau), op, ": expected tau > 0 (the temperature), but got ",
              tau);
  if (noise) {
    TORCH_CHECK(noise->sizes() == logits.sizes(), op, ": expected noise of shape ", logits.sizes(),
                " (the shape of logits), but got ", noise->sizes());
    TORCH_CHECK(noise->device() == logits.device(), op, ": expected noise on ", logits.device(),
                " (the device of logits), but got ", noise->device());
    TORCH_CHECK(noise->scalar_type() == t, op, ": expected noise of dtype ", t,
                " (the dtype of logits), but got ", noise->scalar_type());
  }
}

at::Tensor gumbel_node_gate(const at::Tensor& logits, const std::optional<at::Tensor>& noise,
                            double tau, bool hard, bool training) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::gumbel_node_gate", "")
                       .typed<decltype(gumbel_node_gate)>();
  return op.call(logits, noise, tau, hard, training);
}

at::Tensor gumbel_node_gate_backward(const at::Tensor& grad, const at::Tensor& logits,
                                     const std::optional<at::Tensor>& noise, double tau,
                                     bool training) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_gumbel_node_gate_backward", "")
                       .typed<decltype(gumbel_node_gate_backward)>();
  return op.call(grad, logits, noise, tau, training);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "gumbel_node_gate(Tensor logits, Tensor? noise, float tau, bool hard, bool training) "
      "-> Tensor");
  // The backward is the same for soft and hard gates (straight through).
  m.def(
      "_gumbel_node_gate_backward(Tensor grad, Tensor logits, Tensor? noise, float tau, "
      "bool training) -> Tensor");
}

}  // namespace laplace_attn
