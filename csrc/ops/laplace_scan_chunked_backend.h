// The Backend of run_laplace_scan (laplace_scan_driver.h) for the chunked
// kernels of kernels/laplace_scan_chunked.h: allocates their scratch and hands
// the params to a Runner, which runs the launch sequence
//   static at::TensorOptions options();         // where the scratch lives
//   static void forward(const LaplaceScanParams<T, A>&);
//   static void backward(const LaplaceScanBackwardParams<T, A>&);
// on a GPU (csrc/cuda) or, in the tests, through the launch emulator.
#pragma once

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>

#include "laplace_scan_chunked.h"
#include "ops/laplace_scan.h"

namespace laplace_attn {

template <class Runner>
struct ChunkedScanBackend {
  // The kernels load 16-bit sequences and compute in float32.
  static constexpr bool kNativeActivations = true;

  template <class T, class A>
  static void forward(const LaplaceScanParams<T, A>& p) {
    LaplaceScanParams<T, A> q = p;
    const at::Tensor workspace = scratch<T>(chunked::forward_workspace_elements(p));
    chunked::assign_forward_workspace(q, workspace.mutable_data_ptr<T>());
    Runner::forward(q);
  }

  template <class T, class A>
  static void backward(const LaplaceScanBackwardParams<T, A>& p) {
    LaplaceScanBackwardParams<T, A> q = p;
    const at::Tensor workspace = scratch<T>(chunked::backward_workspace_elements(p));
    chunked::assign_backward_workspace(q, workspace.mutable_data_ptr<T>());
    Runner::backward(q);
  }

 private:
  template <class T>
  static at::Tensor scratch(int64_t elements) {
    return at::empty({elements}, Runner::options().dtype(c10::CppTypeToScalarType<T>::value));
  }
};

}  // namespace laplace_attn
