// CUDA kernels of gumbel_node_gate: one thread per gate, the math shared with
// the CPU (gumbel_node_gate_math.h).
#include "gumbel_node_gate_cuda.h"

namespace laplace_attn::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void gumbel_node_gate_forward_kernel(GumbelGateParams<T> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < p.numel)
    p.out[i] = math::gumbel_gate_forward_at(p, i);
}

template <class T>
__global__ void gumbel_node_gate_backward_kernel(GumbelGateParams<T> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < p.numel)
    p.out[i] = math::gumbel_gate_backward_at(p, i);
}

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

}  // namespace

template <class T>
cudaError_t launch_gumbel_node_gate_forward(const GumbelGateParams<T>& p, cudaStream_t stream) {
  if (p.numel == 0)
    return cudaSuccess;
  gumbel_node_gate_forward_kernel<T><<<blocks_for(p.numel), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_gumbel_node_gate_backward(const GumbelGateParams<T>& p, cudaStream_t stream) {
  if (p.numel == 0)
    return cudaSuccess;
  gumbel_node_gate_backward_kernel<T><<<blocks_for(p.numel), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t launch_gumbel_node_gate_forward<float>(const GumbelGateParams<float>&,
                                                            cudaStream_t);
template cudaError_t launch_gumbel_node_gate_forward<double>(const GumbelGateParams<double>&,
                                                             cudaStream_t);
template cudaError_t launch_gumbel_node_gate_backward<float>(const GumbelGateParams<float>&,
                                                             cudaStream_t);
template cudaError_t launch_gumbel_node_gate_backward<double>(const GumbelGateParams<double>&,
                                                              cudaStream_t);

}  // namespace laplace_attn::cuda
