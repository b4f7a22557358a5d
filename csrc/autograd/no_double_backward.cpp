// The backward operators (_X_backward) are not differentiable themselves. Their
// Autograd kernel says so when a graph of the backward is asked for
// (create_graph=True, or torch.autograd.grad of a gradient), instead of
// PyTorch's fallback warning and a silently wrong second derivative; otherwise
// it passes the call on below autograd.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/GradMode.h>
#include <torch/library.h>

namespace laplace_attn {
namespace {

bool any_requires_grad(const torch::jit::Stack& stack, size_t arguments) {
  for (size_t i = stack.size() - arguments; i < stack.size(); ++i) {
    const c10::IValue& value = stack[i];
    if (value.isTensor() && value.toTensor().requires_grad())
      return true;
    if (value.isTensorList()) {
      for (const at::Tensor& t : value.toTensorList().vec()) {
        if (t.requires_grad())
          return true;
      }
    }
  }
  return false;
}

void no_double_backward(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                        torch::jit::Stack* stack) {
  const size_t arguments = op.schema().arguments().size();
  const std::string name = op.schema().name().substr(op.schema().name().find("::") + 2);
  TORCH_CHECK(!(c10::GradMode::is_enabled() && any_requires_grad(*stack, arguments)), name,
              ": double backward is not supported (a gradient of this operator's gradient was "
              "asked for, e.g. create_graph=True); use first derivatives only");
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  for (const char* op : {"_laplace_scan_backward", "_laplace_linear_attention_backward",
                         "_gumbel_node_gate_backward", "_laplacian_kernel_backward",
                         "_newton_schulz_inverse_backward", "_laplacian_attention_backward"}) {
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&no_double_backward>());
  }
}

}  // namespace laplace_attn
