// laplacian_kernel internals shared by its backends and its autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

#include "ops/internal_api.h"

namespace laplace_attn {

// Throws a c10::Error naming the argument unless the inputs are valid.
LAPLACE_ATTN_INTERNAL_API void check_laplacian_kernel_inputs(const char* op, const at::Tensor& x1,
                                                             const at::Tensor& x2,
                                                             const at::Tensor& inv_lambda);

// Calls laplace_attn::_laplacian_kernel_backward through the dispatcher.
std::tuple<at::Tensor, at::Tensor, at::Tensor> laplacian_kernel_backward(
    const at::Tensor& grad, const at::Tensor& x1, const at::Tensor& x2,
    const at::Tensor& inv_lambda, const at::Tensor& kernel, std::array<bool, 3> output_mask);

}  // namespace laplace_attn
