// laplace_scan on CUDA: the chunked kernels of kernels/laplace_scan.cu on the
// current stream. Built only against a CUDA-enabled PyTorch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "laplace_scan_cuda.h"
#include "ops/laplace_scan_chunked_backend.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn {
namespace {

struct CudaRunner {
  static at::TensorOptions options() {
    return at::TensorOptions().device(at::kCUDA, c10::cuda::current_device());
  }
  template <class T, class A>
  static void forward(const LaplaceScanParams<T, A>& p) {
    C10_CUDA_CHECK(cuda::launch_laplace_scan_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T, class A>
  static void backward(const LaplaceScanBackwardParams<T, A>& p) {
    C10_CUDA_CHECK(cuda::launch_laplace_scan_backward(p, c10::cuda::getCurrentCUDAStream()));
  }
};

using Backend = ChunkedScanBackend<CudaRunner>;

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan_cuda(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd) {
  const c10::cuda::CUDAGuard guard(u.device());
  return run_laplace_scan<Backend>(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd);
}

LaplaceScanGrads laplace_scan_backward_cuda(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, LaplaceScanGradMask output_mask) {
  const c10::cuda::CUDAGuard guard(u.device());
  return run_laplace_scan_backward<Backend>(grad_y, grad_final_fwd, grad_first_bwd, u, decay, freq,
                                            c_fwd, c_bwd, gate, state_fwd, state_bwd, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplace_scan", &laplace_scan_cuda);
  m.impl("_laplace_scan_backward", &laplace_scan_backward_cuda);
}

}  // namespace laplace_attn
