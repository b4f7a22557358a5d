// CUDA launchers of laplace_scan (raw pointers and the CUDA runtime only): the
// launch sequences of laplace_scan_chunked.h on a stream. p carries its
// workspace (chunked::assign_forward_workspace / assign_backward_workspace).
// Each returns the first launch error; the ATen-facing code turns it into one.
#pragma once

#include <cuda_runtime_api.h>

#include "laplace_scan_chunked.h"

namespace laplace_attn::cuda {

template <class T, class A>
cudaError_t launch_laplace_scan_forward(const LaplaceScanParams<T, A>& p, cudaStream_t stream);

template <class T, class A>
cudaError_t launch_laplace_scan_backward(const LaplaceScanBackwardParams<T, A>& p,
                                         cudaStream_t stream);

}  // namespace laplace_attn::cuda
