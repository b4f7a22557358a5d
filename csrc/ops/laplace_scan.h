// laplace_scan inside the library: input checks, the prepared inputs every
// backend starts from, and the backward operator for the autograd wrapper.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

#include "laplace_scan_math.h"
#include "ops/dtype_policy.h"
#include "ops/internal_api.h"

namespace laplace_attn {

// Throws a c10::Error naming the argument and the expected shape, dtype or
// device unless the inputs describe a valid laplace_scan call.
LAPLACE_ATTN_INTERNAL_API void check_laplace_scan_inputs(
    const char* op, const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq,
    const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const std::optional<at::Tensor>& cu_seqlens);

// The batch of the gates and states: u's, or the number of packed sequences.
LAPLACE_ATTN_INTERNAL_API int64_t laplace_scan_batch(const at::Tensor& u,
                                                     const std::optional<at::Tensor>& cu_seqlens);

// float32, or float64 for float64 u: what the kernels compute in, and the dtype
// of the states they return.
LAPLACE_ATTN_INTERNAL_API at::ScalarType laplace_scan_compute_type(const at::Tensor& u);

// Checks a gradient or state tensor of the [B, H, S, D, 2] state shape, B the
// batch of laplace_scan_batch.
LAPLACE_ATTN_INTERNAL_API void check_state_like(const char* op, const char* name,
                                                const at::Tensor& t, const at::Tensor& u,
                                                const at::Tensor& decay, int64_t batch);

// The inputs as contiguous tensors: parameters and states in the compute type
// (float32, or float64 for float64 inputs), with the poles a = exp(-decay -
// i*freq) as [H, S, 2]; u in its own dtype when the backend reads 16-bit
// activations natively (native_activations), in the compute type otherwise.
struct LaplaceScanInputs {
  at::Tensor u, pole, c_fwd, c_bwd, gate, state_fwd, state_bwd;
  at::ScalarType compute_type;
};

LAPLACE_ATTN_INTERNAL_API LaplaceScanInputs prepare_laplace_scan_inputs(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    bool native_activations);

// `t` in the compute type and contiguous, or an undefined tensor.
LAPLACE_ATTN_INTERNAL_API at::Tensor compute_copy(const std::optional<at::Tensor>& t,
                                                  at::ScalarType compute_type);

template <class T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

template <class T>
T* mutable_data_or_null(const at::Tensor& t) {
  return t.defined() ? t.mutable_data_ptr<T>() : nullptr;
}

template <class T, class A>
void fill_laplace_scan_params(LaplaceScanParams<T, A>& p, const LaplaceScanInputs& in) {
  p.batch = in.u.size(0);
  p.length = in.u.size(1);
  p.heads = in.u.size(2);
  p.channels = in.u.size(3);
  p.nodes = in.pole.size(1);
  p.bilateral = in.c_bwd.defined();
  p.u = activation_data<A>(in.u);
  p.pole = in.pole.const_data_ptr<T>();
  p.c_fwd = in.c_fwd.const_data_ptr<T>();
  p.c_bwd = data_or_null<T>(in.c_bwd);
  p.gate = data_or_null<T>(in.gate);
  p.state_fwd = data_or_null<T>(in.state_fwd);
  p.state_bwd = data_or_null<T>(in.state_bwd);
}

// Gradient outputs of _laplace_scan_backward, in schema order.
enum LaplaceScanGrad {
  kGradU = 0,
  kGradDecay,
  kGradFreq,
  kGradCFwd,
  kGradCBwd,
  kGradGate,
  kGradStateFwd,
  kGradStateBwd,
  kNumLaplaceScanGrads
};
using LaplaceScanGradMask = std::array<bool, kNumLaplaceScanGrads>;

using LaplaceScanGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                    at::Tensor, at::Tensor, at::Tensor>;

// Calls laplace_attn::_laplace_scan_backward through the dispatcher.
LaplaceScanGrads laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const std::optional<at::Tensor>& cu_seqlens,
    LaplaceScanGradMask output_mask);

}  // namespace laplace_attn
