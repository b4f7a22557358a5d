// gumbel_node_gate's CUDA kernels run by the launch emulator, through the
// driver the CUDA registration uses.
#include <torch/library.h>

#include "emulated_runner.h"
#include "ops/gumbel_node_gate_driver.h"

namespace laplace_attn::emulation {

TORCH_LIBRARY_IMPL(laplace_attn_emulated, CPU, m) {
  m.impl("gumbel_node_gate", &run_gumbel_node_gate<EmulatedBackend>);
  m.impl("_gumbel_node_gate_backward", &run_gumbel_node_gate_backward<EmulatedBackend>);
}

}  // namespace laplace_attn::emulation
