// laplacian_kernel's CUDA launchers: the kernels of laplacian_kernel_kernels.h.
#include "cuda_launch_sequence.cuh"
#include "laplacian_kernel_kernels.h"

namespace laplace_attn {

template <class T, class A>
cudaError_t cuda_forward(const LaplacianKernelParams<T, A>& p, cudaStream_t stream) {
  return gpu::run_forward(p, stream);
}

template <class T, class A>
cudaError_t cuda_backward(const LaplacianKernelParams<T, A>& p, cudaStream_t stream) {
  return gpu::run_backward(p, stream);
}

#define LAPLACE_ATTN_INSTANTIATE(T, A)                                                       \
  template cudaError_t cuda_forward<T, A>(const LaplacianKernelParams<T, A>&, cudaStream_t); \
  template cudaError_t cuda_backward<T, A>(const LaplacianKernelParams<T, A>&, cudaStream_t);
LAPLACE_ATTN_INSTANTIATE(float, float)
LAPLACE_ATTN_INSTANTIATE(double, double)
LAPLACE_ATTN_INSTANTIATE(float, bfloat16_storage)
LAPLACE_ATTN_INSTANTIATE(float, float16_storage)

}  // namespace laplace_attn
