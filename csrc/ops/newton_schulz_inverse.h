// newton_schulz_inverse internals for its autograd.
#pragma once

#include <ATen/core/Tensor.h>

namespace laplace_attn {

// Calls laplace_attn::_newton_schulz_inverse_backward: -Z^T grad Z^T.
at::Tensor newton_schulz_inverse_backward(const at::Tensor& grad, const at::Tensor& z);

}  // namespace laplace_attn
