// The Backend of every op driver (ops/*_driver.h) for the kernels of
// kernels/*_kernels.h, the CUDA layout: inputs as they are (no padding, no
// transposed copies), 16-bit activations read in place. It allocates the
// scratch a launch sequence asks for and hands the params to a Runner:
//   static at::TensorOptions options();   // the device the scratch lives on
//   static void forward(const P&);        // runs gpu::launch_forward
//   static void backward(const P&);       // runs gpu::launch_backward
// on a GPU (csrc/cuda/cuda_runner.h) or, in the tests, through the launch
// emulator (tests/emulation).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/core/ScalarType.h>

#include "launch.h"

namespace laplace_attn {

template <class Runner>
struct DeviceBackend {
  static constexpr bool kNativeActivations = true;
  static constexpr bool kPaddedInputs = false;

  template <class P>
  static void forward(const P& p) {
    P q = p;
    const at::Tensor workspace = scratch<P>(gpu::forward_workspace_elements(p));
    gpu::assign_forward_workspace(q, data<P>(workspace));
    Runner::forward(q);
  }

  template <class P>
  static void backward(const P& p) {
    P q = p;
    const at::Tensor workspace = scratch<P>(gpu::backward_workspace_elements(p));
    gpu::assign_backward_workspace(q, data<P>(workspace));
    Runner::backward(q);
  }

  // Per-head sums of per-row partials (laplacian_attention's d inv_lambda): a
  // float64 reduction of a fixed shape, deterministic on every device.
  static void reduce_lambda(const at::Tensor& rows, at::Tensor& per_head) {
    per_head.copy_(at::sum(rows, {0, 2}, false, at::kDouble));
  }

 private:
  template <class P>
  static at::Tensor scratch(int64_t elements) {
    using T = typename P::compute_type;
    return at::empty({elements}, Runner::options().dtype(c10::CppTypeToScalarType<T>::value));
  }
  template <class P>
  static typename P::compute_type* data(const at::Tensor& t) {
    return t.numel() ? t.mutable_data_ptr<typename P::compute_type>() : nullptr;
  }
};

}  // namespace laplace_attn
