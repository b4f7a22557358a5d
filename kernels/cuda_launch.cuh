// The CUDA side of kernels/launch.h: a __global__ wrapper that calls a kernel
// body for its thread, and the Launch type that runs a launch sequence on a
// stream, keeping the first error.
#pragma once

#include <cuda_runtime_api.h>

#include "launch.h"

namespace laplace_attn::gpu {

template <class Kernel, class P>
__global__ void run_kernel(P p, int64_t work) {
  const int64_t thread = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (thread < work)
    Kernel::run(p, thread);
}

class CudaLaunch {
 public:
  explicit CudaLaunch(cudaStream_t stream) : stream_(stream) {}

  template <class Kernel, class P>
  void launch(const P& p, int64_t work) {
    if (status_ != cudaSuccess || work == 0)
      return;
    const Grid grid = grid_for(work);
    run_kernel<Kernel, P>
        <<<static_cast<unsigned int>(grid.blocks),
           static_cast<unsigned int>(grid.threads_per_block), 0, stream_>>>(p, work);
    status_ = cudaGetLastError();
  }

  cudaError_t status() const { return status_; }

 private:
  cudaStream_t stream_;
  cudaError_t status_ = cudaSuccess;
};

}  // namespace laplace_attn::gpu
