// laplace_scan's CUDA kernels run by the launch emulator, through the driver
// and backend the CUDA registration uses.
#include <torch/library.h>

#include "emulated_launch.h"
#include "ops/laplace_scan_chunked_backend.h"
#include "ops/laplace_scan_driver.h"

namespace laplace_attn::emulation {
namespace {

struct EmulatedRunner {
  static at::TensorOptions options() { return at::TensorOptions(); }

  template <class T, class A>
  static void forward(const LaplaceScanParams<T, A>& p) {
    launch_log().clear();
    EmulatedLaunch launch;
    chunked::launch_laplace_scan_forward(launch, p);
  }

  template <class T, class A>
  static void backward(const LaplaceScanBackwardParams<T, A>& p) {
    launch_log().clear();
    EmulatedLaunch launch;
    chunked::launch_laplace_scan_backward(launch, p);
  }
};

using Backend = ChunkedScanBackend<EmulatedRunner>;

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn_emulated, CPU, m) {
  m.impl("laplace_scan", &run_laplace_scan<Backend>);
  m.impl("_laplace_scan_backward", &run_laplace_scan_backward<Backend>);
}

}  // namespace laplace_attn::emulation
