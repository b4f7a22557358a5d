// The Runner of DeviceBackend (csrc/ops/device_backend.h) that executes the
// CUDA launch sequences through the launch emulator, on the CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include "emulated_launch.h"
#include "gumbel_node_gate_kernels.h"
#include "laplace_scan_kernels.h"
#include "laplacian_attention_kernels.h"
#include "laplacian_kernel_kernels.h"
#include "ops/device_backend.h"

namespace laplace_attn::emulation {

struct EmulatedRunner {
  static at::TensorOptions options() { return at::TensorOptions(); }

  template <class P>
  static void forward(const P& p) {
    launch_log().clear();
    EmulatedLaunch launch;
    gpu::launch_forward(launch, p);
  }

  template <class P>
  static void backward(const P& p) {
    launch_log().clear();
    EmulatedLaunch launch;
    gpu::launch_backward(launch, p);
  }
};

using EmulatedBackend = DeviceBackend<EmulatedRunner>;

}  // namespace laplace_attn::emulation
