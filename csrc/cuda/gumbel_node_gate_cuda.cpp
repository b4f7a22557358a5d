// gumbel_node_gate on CUDA (built only against a CUDA-enabled PyTorch).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "gumbel_node_gate_cuda.h"
#include "ops/gumbel_node_gate_driver.h"

namespace laplace_attn {
namespace {

struct CudaBackend {
  template <class T>
  static void forward(const GumbelGateParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_gumbel_node_gate_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T>
  static void backward(const GumbelGateParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_gumbel_node_gate_backward(p, c10::cuda::getCurrentCUDAStream()));
  }
};

at::Tensor gumbel_node_gate_cuda(const at::Tensor& logits, const std::optional<at::Tensor>& noise,
                                 double tau, bool hard, bool training) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return run_gumbel_node_gate<CudaBackend>(logits, noise, tau, hard, training);
}

at::Tensor gumbel_node_gate_backward_cuda(const at::Tensor& grad, const at::Tensor& logits,
                                          const std::optional<at::Tensor>& noise, double tau,
                                          bool training) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return run_gumbel_node_gate_backward<CudaBackend>(grad, logits, noise, tau, training);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("gumbel_node_gate", &gumbel_node_gate_cuda);
  m.impl("_gumbel_node_gate_backward", &gumbel_node_gate_backward_cuda);
}

}  // namespace laplace_attn
