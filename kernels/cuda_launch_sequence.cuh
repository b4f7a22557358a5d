// The bodies of the CUDA launchers of kernels/cuda_launchers.h: run an op's
// launch sequence through CudaLaunch. launch_forward / launch_backward are found
// by argument-dependent lookup in laplace_attn::gpu, where each op's
// kernels/<op>_kernels.h defines them (included by the op's .cu).
#pragma once

#include "cuda_launch.cuh"
#include "cuda_launchers.h"

namespace laplace_attn::gpu {

template <class P>
cudaError_t run_forward(const P& p, cudaStream_t stream) {
  CudaLaunch launch(stream);
  launch_forward(launch, p);
  return launch.status();
}

template <class P>
cudaError_t run_backward(const P& p, cudaStream_t stream) {
  CudaLaunch launch(stream);
  launch_backward(launch, p);
  return launch.status();
}

}  // namespace laplace_attn::gpu
