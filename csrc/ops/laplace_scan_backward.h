// The backward operator of laplace_scan, for the autograd wrapper.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "ops/laplace_scan_inputs.h"

namespace laplace_attn {

using LaplaceScanGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                    at::Tensor, at::Tensor, at::Tensor>;

// Calls laplace_attn::_laplace_scan_backward through the dispatcher.
LaplaceScanGrads laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, LaplaceScanGradMask output_mask);

}  // namespace laplace_attn
