// Autograd for laplacian_kernel: the backward reuses the forward output K and
// recomputes the differences, so no [N, M, D] tensor is ever stored.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/laplacian_kernel.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LaplacianKernelFunction : public torch::autograd::Function<LaplacianKernelFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x1, const at::Tensor& x2,
                            const at::Tensor& inv_lambda) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor kernel = laplacian_kernel(x1, x2, inv_lambda);
    ctx->save_for_backward({x1, x2, inv_lambda, kernel});
    return kernel;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   ctx->needs_input_grad(2)};
    auto [g1, g2, gl] =
        laplacian_kernel_backward(grads[0], saved[0], saved[1], saved[2], saved[3], mask);
    return {mask[0] ? g1 : at::Tensor(), mask[1] ? g2 : at::Tensor(), mask[2] ? gl : at::Tensor()};
  }
};

at::Tensor laplacian_kernel_autograd(const at::Tensor& x1, const at::Tensor& x2,
                                     const at::Tensor& inv_lambda) {
  return LaplacianKernelFunction::apply(x1, x2, inv_lambda);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("laplacian_kernel", &laplacian_kernel_autograd);
}

}  // namespace laplace_attn
