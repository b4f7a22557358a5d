// laplacian_attention on CUDA (built only against a CUDA-enabled PyTorch).
#include <torch/library.h>

#include "cuda/cuda_backend.h"
#include "ops/laplacian_attention_driver.h"

namespace laplace_attn {

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("_laplacian_attention_forward",
         &OnDeviceOfFirstArgument<&run_laplacian_attention_forward<CudaBackend>>::call);
  m.impl("_laplacian_attention_backward",
         &OnDeviceOfFirstArgument<&run_laplacian_attention_backward<CudaBackend>>::call);
}

}  // namespace laplace_attn
