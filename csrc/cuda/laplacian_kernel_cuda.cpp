// laplacian_kernel on CUDA (built only against a CUDA-enabled PyTorch).
#include <torch/library.h>

#include "cuda/cuda_backend.h"
#include "ops/laplacian_kernel_driver.h"

namespace laplace_attn {

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplacian_kernel", &OnDeviceOfFirstArgument<&run_laplacian_kernel<CudaBackend>>::call);
  m.impl("_laplacian_kernel_backward",
         &OnDeviceOfFirstArgument<&run_laplacian_kernel_backward<CudaBackend>>::call);
}

}  // namespace laplace_attn
