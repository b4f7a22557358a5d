// laplace_attn: the public C++ API.
//
// Every function dispatches through the PyTorch dispatcher, so it picks the CPU
// or CUDA kernel from its inputs' device and records autograd when an input
// requires grad. Link the op library (liblaplace_attn.so) to use it; no Python
// is involved. The math and shapes are documented in docs/ and SPEC.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "laplace_attn/build_info.h"

namespace laplace_attn {

// Fused bilateral Laplace scan with readout (SPEC 2.1).
//
//   u [B, N, H, D]; decay, freq [H, S] (decay >= 0); c_fwd, c_bwd [H, S, D, 2];
//   gate [B, H, S]; state_fwd, state_bwd [B, H, S, D, 2].
//
// Returns (y [B, N, H, D], final_fwd, first_bwd), the states after the last token
// of the causal scan and at the first token of the anticausal scan, so a long
// sequence can be processed in chunks. The scan is bilateral iff c_bwd is given;
// for a causal scan first_bwd is zeros. A node whose gate is exactly 0 is
// switched off: it costs nothing, contributes nothing and its state passes
// through unchanged.
LAPLACE_ATTN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd = std::nullopt,
    const std::optional<at::Tensor>& gate = std::nullopt,
    const std::optional<at::Tensor>& state_fwd = std::nullopt,
    const std::optional<at::Tensor>& state_bwd = std::nullopt);

}  // namespace laplace_attn
