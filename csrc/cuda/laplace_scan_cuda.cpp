// laplace_scan on CUDA: launches the kernels of kernels/laplace_scan.cu on the
// current stream. Built only against a CUDA-enabled PyTorch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "laplace_scan_cuda.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn {
namespace {

struct CudaBackend {
  // The CUDA kernels read the compute type: 16-bit activations are converted first.
  static constexpr bool kNativeActivations = false;

  template <class T>
  static void forward(const LaplaceScanParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplace_scan_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T>
  static void adjoint(const LaplaceScanBackwardParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplace_scan_adjoint(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T>
  static void param_grads(const LaplaceScanBackwardParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplace_scan_param_grads(p, c10::cuda::getCurrentCUDAStream()));
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan_cuda(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd) {
  const c10::cuda::CUDAGuard guard(u.device());
  return run_laplace_scan<CudaBackend>(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd);
}

LaplaceScanGrads laplace_scan_backward_cuda(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, LaplaceScanGradMask output_mask) {
  const c10::cuda::CUDAGuard guard(u.device());
  return run_laplace_scan_backward<CudaBackend>(grad_y, grad_final_fwd, grad_first_bwd, u, decay,
                                                freq, c_fwd, c_bwd, gate, state_fwd, state_bwd,
                                                output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplace_scan", &laplace_scan_cuda);
  m.impl("_laplace_scan_backward", &laplace_scan_backward_cuda);
}

}  // namespace laplace_attn
