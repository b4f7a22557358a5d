// laplacian_kernel on CUDA (built only against a CUDA-enabled PyTorch).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "laplacian_kernel_cuda.h"
#include "ops/laplacian_kernel_driver.h"

namespace laplace_attn {
namespace {

struct CudaBackend {
  // The kernels loop over the true sizes: no padding, no transposed copy.
  static constexpr bool kPaddedInputs = false;
  // The CUDA kernels read the compute type: 16-bit matrices are converted.
  static constexpr bool kNativeActivations = false;

  template <class T>
  static void forward(const LaplacianKernelParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplacian_kernel_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T>
  static void backward(const LaplacianKernelParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplacian_kernel_backward(p, c10::cuda::getCurrentCUDAStream()));
  }
};

at::Tensor laplacian_kernel_cuda(const at::Tensor& x1, const at::Tensor& x2,
                                 const at::Tensor& inv_lambda) {
  const c10::cuda::CUDAGuard guard(x1.device());
  return run_laplacian_kernel<CudaBackend>(x1, x2, inv_lambda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplacian_kernel_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x1, const at::Tensor& x2,
    const at::Tensor& inv_lambda, const at::Tensor& kernel, std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard guard(x1.device());
  return run_laplacian_kernel_backward<CudaBackend>(grad, x1, x2, inv_lambda, kernel, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplacian_kernel", &laplacian_kernel_cuda);
  m.impl("_laplacian_kernel_backward", &laplacian_kernel_backward_cuda);
}

}  // namespace laplace_attn
