// Autograd for newton_schulz_inverse: the gradient of the inverse, -Z^T G Z^T,
// evaluated at the iterate Z, rather than the gradient of the unrolled
// iterations (cheaper, and what the inverse is meant to be).
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/newton_schulz_inverse.h"

namespace laplace_attn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class NewtonSchulzInverseFunction : public torch::autograd::Function<NewtonSchulzInverseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& A, int64_t iters, int64_t order,
                            double ridge) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor z = newton_schulz_inverse(A, iters, order, ridge);
    ctx->save_for_backward({z});
    return z;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor z = ctx->get_saved_variables()[0];
    return {newton_schulz_inverse_backward(grads[0], z), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor newton_schulz_inverse_autograd(const at::Tensor& A, int64_t iters, int64_t order,
                                          double ridge) {
  return NewtonSchulzInverseFunction::apply(A, iters, order, ridge);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, Autograd, m) {
  m.impl("newton_schulz_inverse", &newton_schulz_inverse_autograd);
}

}  // namespace laplace_attn
