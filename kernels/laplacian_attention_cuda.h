// CUDA launchers of laplacian_attention (raw pointers and the CUDA runtime only).
#pragma once

#include <cuda_runtime_api.h>

#include "laplacian_attention_math.h"

namespace laplace_attn::cuda {

template <class T>
cudaError_t launch_laplacian_attention_forward(const LaplacianAttentionParams<T>& p,
                                               cudaStream_t stream);

// Fills grad_q and row_grad_lambda (when non-null), then grad_k and grad_v.
template <class T>
cudaError_t launch_laplacian_attention_backward(const LaplacianAttentionParams<T>& p,
                                                cudaStream_t stream);

}  // namespace laplace_attn::cuda
