// laplacian_attention on CUDA (built only against a CUDA-enabled PyTorch).
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "laplacian_attention_cuda.h"
#include "ops/laplacian_attention_driver.h"

namespace laplace_attn {
namespace {

struct CudaBackend {
  // The CUDA kernels read the compute type: 16-bit inputs are converted.
  static constexpr bool kNativeActivations = false;
  // The kernels loop over the true sizes: no padding, no transposed copy.
  static constexpr bool kPaddedInputs = false;
  template <class T>
  static void forward(const LaplacianAttentionParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplacian_attention_forward(p, c10::cuda::getCurrentCUDAStream()));
  }
  template <class T>
  static void backward(const LaplacianAttentionParams<T>& p) {
    C10_CUDA_CHECK(cuda::launch_laplacian_attention_backward(p, c10::cuda::getCurrentCUDAStream()));
  }
  static void reduce_lambda(const at::Tensor& rows, at::Tensor& per_head) {
    per_head.copy_(rows.sum({0, 2}));
  }
};

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& inv_lambda,
                                                const std::optional<at::Tensor>& key_padding_mask,
                                                bool causal) {
  const c10::cuda::CUDAGuard guard(q.device());
  return run_laplacian_attention_forward<CudaBackend>(q, k, v, inv_lambda, key_padding_mask,
                                                      causal);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const at::Tensor& out, const at::Tensor& lse, std::array<bool, 4> output_mask) {
  const c10::cuda::CUDAGuard guard(q.device());
  return run_laplacian_attention_backward<CudaBackend>(
      grad_out, q, k, v, inv_lambda, key_padding_mask, causal, out, lse, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("_laplacian_attention_forward", &forward_cuda);
  m.impl("_laplacian_attention_backward", &backward_cuda);
}

}  // namespace laplace_attn
