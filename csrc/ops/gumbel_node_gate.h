// gumbel_node_gate internals shared by its backends and its autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "ops/internal_api.h"

namespace laplace_attn {

// Throws a c10::Error naming the argument unless the inputs are valid.
LAPLACE_ATTN_INTERNAL_API void check_gumbel_node_gate_inputs(const char* op,
                                                             const at::Tensor& logits,
                                                             const std::optional<at::Tensor>& noise,
                                                             double tau);

// Calls laplace_attn::_gumbel_node_gate_backward through the dispatcher.
at::Tensor gumbel_node_gate_backward(const at::Tensor& grad, const at::Tensor& logits,
                                     const std::optional<at::Tensor>& noise, double tau,
                                     bool training);

}  // namespace laplace_attn
