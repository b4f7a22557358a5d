// gumbel_node_gate's CUDA launchers: the kernels of gumbel_node_gate_kernels.h.
#include "cuda_launch_sequence.cuh"
#include "gumbel_node_gate_kernels.h"

namespace laplace_attn {

template <class T>
cudaError_t cuda_forward(const GumbelGateParams<T>& p, cudaStream_t stream) {
  return gpu::run_forward(p, stream);
}

template <class T>
cudaError_t cuda_backward(const GumbelGateParams<T>& p, cudaStream_t stream) {
  return gpu::run_backward(p, stream);
}

template cudaError_t cuda_forward<float>(const GumbelGateParams<float>&, cudaStream_t);
template cudaError_t cuda_forward<double>(const GumbelGateParams<double>&, cudaStream_t);
template cudaError_t cuda_backward<float>(const GumbelGateParams<float>&, cudaStream_t);
template cudaError_t cuda_backward<double>(const GumbelGateParams<double>&, cudaStream_t);

}  // namespace laplace_attn
