// The Backend every op's CUDA registration runs its driver with: the kernels of
// kernels/*_kernels.h launched on the current stream, scratch from PyTorch's
// caching allocator. Built only against a CUDA-enabled PyTorch.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda_launchers.h"
#include "ops/device_backend.h"

namespace laplace_attn {

struct CudaRunner {
  static at::TensorOptions options() {
    return at::TensorOptions().device(at::kCUDA, c10::cuda::current_device());
  }
  template <class P>
  static void forward(const P& p) {
    C10_CUDA_CHECK(cuda_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class P>
  static void backward(const P& p) {
    C10_CUDA_CHECK(cuda_backward(p, c10::cuda::getCurrentCUDAStream()));
  }
};

using CudaBackend = DeviceBackend<CudaRunner>;

// A driver function run on the device of its first argument (a tensor in every
// op), which is where the registered kernel must launch.
template <auto F>
struct OnDeviceOfFirstArgument;

template <class R, class First, class... Rest, R (*F)(First, Rest...)>
struct OnDeviceOfFirstArgument<F> {
  static R call(First first, Rest... rest) {
    const c10::cuda::CUDAGuard guard(first.device());
    return F(first, rest...);
  }
};

}  // namespace laplace_attn
