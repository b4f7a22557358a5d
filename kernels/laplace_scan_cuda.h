// CUDA launchers of laplace_scan (raw pointers and the CUDA runtime only).
// Each returns the launch status; the ATen-facing code turns it into an error.
#pragma once

#include <cuda_runtime_api.h>

#include "laplace_scan_math.h"

namespace laplace_attn::cuda {

template <class T>
cudaError_t launch_laplace_scan_forward(const LaplaceScanParams<T>& p, cudaStream_t stream);

template <class T>
cudaError_t launch_laplace_scan_adjoint(const LaplaceScanBackwardParams<T>& p, cudaStream_t stream);

// Writes grad_c_fwd/grad_c_bwd (which must be zero-filled), grad_decay,
// grad_freq and grad_gate, using partial_pole and partial_gate as scratch.
template <class T>
cudaError_t launch_laplace_scan_param_grads(const LaplaceScanBackwardParams<T>& p,
                                            cudaStream_t stream);

}  // namespace laplace_attn::cuda
