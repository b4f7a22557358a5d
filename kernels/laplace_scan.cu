// CUDA kernels of laplace_scan: the bodies and launch sequences of
// laplace_scan_chunked.h, run through CudaLaunch.
#include "cuda_launch.cuh"
#include "laplace_scan_cuda.h"

namespace laplace_attn::cuda {

template <class T, class A>
cudaError_t launch_laplace_scan_forward(const LaplaceScanParams<T, A>& p, cudaStream_t stream) {
  CudaLaunch launch(stream);
  chunked::launch_laplace_scan_forward(launch, p);
  return launch.status();
}

template <class T, class A>
cudaError_t launch_laplace_scan_backward(const LaplaceScanBackwardParams<T, A>& p,
                                         cudaStream_t stream) {
  CudaLaunch launch(stream);
  chunked::launch_laplace_scan_backward(launch, p);
  return launch.status();
}

#define LAPLACE_ATTN_INSTANTIATE(T, A)                                                         \
  template cudaError_t launch_laplace_scan_forward<T, A>(const LaplaceScanParams<T, A>&,       \
                                                         cudaStream_t);                        \
  template cudaError_t launch_laplace_scan_backward<T, A>(const LaplaceScanBackwardParams<T, A>&, \
                                                          cudaStream_t);

LAPLACE_ATTN_INSTANTIATE(float, float)
LAPLACE_ATTN_INSTANTIATE(double, double)
LAPLACE_ATTN_INSTANTIATE(float, bfloat16_storage)
LAPLACE_ATTN_INSTANTIATE(float, float16_storage)

}  // namespace laplace_attn::cuda
