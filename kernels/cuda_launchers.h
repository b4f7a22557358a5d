// The CUDA launchers of every op (raw pointers and the CUDA runtime only): each
// runs the op's launch sequence (gpu::launch_forward / gpu::launch_backward of
// kernels/<op>_kernels.h) on a stream and returns the first launch error. One
// overload per params type, instantiated in kernels/<op>.cu; p carries its
// scratch (gpu::assign_*_workspace).
#pragma once

#include <cuda_runtime_api.h>

#include "gumbel_node_gate_math.h"
#include "laplace_scan_math.h"
#include "laplacian_attention_math.h"
#include "laplacian_kernel_math.h"

namespace laplace_attn {

template <class T, class A>
cudaError_t cuda_forward(const LaplaceScanParams<T, A>& p, cudaStream_t stream);
template <class T, class A>
cudaError_t cuda_backward(const LaplaceScanBackwardParams<T, A>& p, cudaStream_t stream);

template <class T, class A>
cudaError_t cuda_forward(const LaplacianKernelParams<T, A>& p, cudaStream_t stream);
template <class T, class A>
cudaError_t cuda_backward(const LaplacianKernelParams<T, A>& p, cudaStream_t stream);

template <class T, class A>
cudaError_t cuda_forward(const LaplacianAttentionParams<T, A>& p, cudaStream_t stream);
template <class T, class A>
cudaError_t cuda_backward(const LaplacianAttentionParams<T, A>& p, cudaStream_t stream);

template <class T>
cudaError_t cuda_forward(const GumbelGateParams<T>& p, cudaStream_t stream);
template <class T>
cudaError_t cuda_backward(const GumbelGateParams<T>& p, cudaStream_t stream);

}  // namespace laplace_attn
