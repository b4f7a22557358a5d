// laplacian_kernel: operator schemas, input checks and the C++ entry point.
#include "ops/laplacian_kernel.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"
#include "ops/dtype_policy.h"

namespace laplace_attn {

void check_laplacian_kernel_inputs(const char* op, const at::Tensor& x1, const at::Tensor& x2,
                                   const at::Tensor& inv_lambda) {
  const auto t = x1.scalar_type();
  TORCH_CHECK(is_activation_dtype(t), op,
              ": expected x1 of dtype float32, float64, bfloat16 or float16, but got ", t);
  TORCH_CHECK(x1.dim() == 4, op, ": expected x1 of shape [B, H, N, D] (4-D), but got ", x1.dim(),
              "-D shape ", x1.sizes());
  TORCH_CHECK(x2.dim() == 4 && x2.size(0) == x1.size(0) && x2.size(1) == x1.size(1) &&
                  x2.size(3) == x1.size(3),
              op, ": expected x2 of shape [B, H, M, D] = [", x1.size(0), ", ", x1.size(1), ", M, ",
              x1.size(3), "], but got ", x2.sizes());
  const int64_t H = x1.size(1);
  TORCH_CHECK(inv_lambda.dim() == 0 || (inv_lambda.dim() == 1 && inv_lambda.size(0) == H), op,
              ": expected inv_lambda to be a scalar (0-D) or of shape [H] = [", H, "], but got ",
              inv_lambda.sizes());
  TORCH_CHECK(x2.device() == x1.device(), op, ": expected x2 on ", x1.device(),
              " (the device of x1), but got ", x2.device());
  TORCH_CHECK(x2.scalar_type() == t, op, ": expected x2 of dtype ", t,
              " (the dtype of x1), but got ", x2.scalar_type());
  check_param_dtype(op, "inv_lambda", inv_lambda, x1, "x1");
}

at::Tensor laplacian_kernel(const at::Tensor& x1, const at::Tensor& x2,
                            const at::Tensor& inv_lambda) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplacian_kernel", "")
                       .typed<decltype(laplacian_kernel)>();
  return op.call(x1, x2, inv_lambda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplacian_kernel_backward(
    const at::Tensor& grad, const at::Tensor& x1, const at::Tensor& x2,
    const at::Tensor& inv_lambda, const at::Tensor& kernel, std::array<bool, 3> output_mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplacian_kernel_backward", "")
                       .typed<decltype(laplacian_kernel_backward)>();
  return op.call(grad, x1, x2, inv_lambda, kernel, output_mask);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def("laplacian_kernel(Tensor x1, Tensor x2, Tensor inv_lambda) -> Tensor");
  // `kernel` is the forward output; gradients not requested are empty.
  m.def(
      "_laplacian_kernel_backward(Tensor grad, Tensor x1, Tensor x2, Tensor inv_lambda, "
      "Tensor kernel, bool[3] output_mask) -> (Tensor grad_x1, Tensor grad_x2, "
      "Tensor grad_inv_lambda)");
}

}  // namespace laplace_attn
