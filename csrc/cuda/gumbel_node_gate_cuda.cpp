// gumbel_node_gate on CUDA (built only against a CUDA-enabled PyTorch).
#include <torch/library.h>

#include "cuda/cuda_backend.h"
#include "ops/gumbel_node_gate_driver.h"

namespace laplace_attn {

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("gumbel_node_gate", &OnDeviceOfFirstArgument<&run_gumbel_node_gate<CudaBackend>>::call);
  m.impl("_gumbel_node_gate_backward",
         &OnDeviceOfFirstArgument<&run_gumbel_node_gate_backward<CudaBackend>>::call);
}

}  // namespace laplace_attn
