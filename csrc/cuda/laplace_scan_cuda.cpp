// laplace_scan on CUDA (built only against a CUDA-enabled PyTorch).
#include <torch/library.h>

#include "cuda/cuda_backend.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn {

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplace_scan", &OnDeviceOfFirstArgument<&run_laplace_scan<CudaBackend>>::call);
  m.impl("_laplace_scan_backward",
         &OnDeviceOfFirstArgument<&run_laplace_scan_backward<CudaBackend>>::call);
}

}  // namespace laplace_attn
