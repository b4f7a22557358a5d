// laplacian_kernel's and laplacian_attention's CUDA kernels run by the launch
// emulator, through the drivers the CUDA registrations use.
#include <torch/library.h>

#include "emulated_runner.h"
#include "ops/laplacian_attention_driver.h"
#include "ops/laplacian_kernel_driver.h"

namespace laplace_attn::emulation {

TORCH_LIBRARY_IMPL(laplace_attn_emulated, CPU, m) {
  m.impl("laplacian_kernel", &run_laplacian_kernel<EmulatedBackend>);
  m.impl("_laplacian_kernel_backward", &run_laplacian_kernel_backward<EmulatedBackend>);
  m.impl("_laplacian_attention_forward", &run_laplacian_attention_forward<EmulatedBackend>);
  m.impl("_laplacian_attention_backward", &run_laplacian_attention_backward<EmulatedBackend>);
}

}  // namespace laplace_attn::emulation
