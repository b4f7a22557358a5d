// CUDA launchers of gumbel_node_gate (raw pointers and the CUDA runtime only).
#pragma once

#include <cuda_runtime_api.h>

#include "gumbel_node_gate_math.h"

namespace laplace_attn::cuda {

template <class T>
cudaError_t launch_gumbel_node_gate_forward(const GumbelGateParams<T>& p, cudaStream_t stream);

template <class T>
cudaError_t launch_gumbel_node_gate_backward(const GumbelGateParams<T>& p, cudaStream_t stream);

}  // namespace laplace_attn::cuda
