// laplace_scan's CUDA launchers: the kernels of laplace_scan_kernels.h.
#include "cuda_launch_sequence.cuh"
#include "laplace_scan_kernels.h"

namespace laplace_attn {

template <class T, class A>
cudaError_t cuda_forward(const LaplaceScanParams<T, A>& p, cudaStream_t stream) {
  return gpu::run_forward(p, stream);
}

template <class T, class A>
cudaError_t cuda_backward(const LaplaceScanBackwardParams<T, A>& p, cudaStream_t stream) {
  return gpu::run_backward(p, stream);
}

#define LAPLACE_ATTN_INSTANTIATE(T, A)                                                   \
  template cudaError_t cuda_forward<T, A>(const LaplaceScanParams<T, A>&, cudaStream_t); \
  template cudaError_t cuda_backward<T, A>(const LaplaceScanBackwardParams<T, A>&, cudaStream_t);
LAPLACE_ATTN_INSTANTIATE(float, float)
LAPLACE_ATTN_INSTANTIATE(double, double)
LAPLACE_ATTN_INSTANTIATE(float, bfloat16_storage)
LAPLACE_ATTN_INSTANTIATE(float, float16_storage)

}  // namespace laplace_attn
