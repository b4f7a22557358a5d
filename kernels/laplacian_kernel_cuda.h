// CUDA launchers of laplacian_kernel (raw pointers and the CUDA runtime only).
#pragma once

#include <cuda_runtime_api.h>

#include "laplacian_kernel_math.h"

namespace laplace_attn::cuda {

template <class T>
cudaError_t launch_laplacian_kernel_forward(const LaplacianKernelParams<T>& p, cudaStream_t stream);

// Fills whichever of grad_x1, grad_x2 and grad_inv_lambda are non-null.
template <class T>
cudaError_t launch_laplacian_kernel_backward(const LaplacianKernelParams<T>& p,
                                             cudaStream_t stream);

}  // namespace laplace_attn::cuda
