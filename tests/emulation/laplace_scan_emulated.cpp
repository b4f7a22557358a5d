// laplace_scan's CUDA kernels run by the launch emulator, through the driver
// the CUDA registration uses.
#include <torch/library.h>

#include "emulated_runner.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn::emulation {

TORCH_LIBRARY_IMPL(laplace_attn_emulated, CPU, m) {
  m.impl("laplace_scan", &run_laplace_scan<EmulatedBackend>);
  m.impl("_laplace_scan_backward", &run_laplace_scan_backward<EmulatedBackend>);
}

}  // namespace laplace_attn::emulation
