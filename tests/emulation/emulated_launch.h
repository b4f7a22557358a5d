// The launch emulator: runs the CUDA kernel bodies of kernels/ on the CPU over
// the grid the CUDA launcher computes (grid_for), block by block and thread by
// thread. The bodies are independent per thread (kernels/launch.h), so this is
// an exact execution of each launch. Every launch is recorded, so tests and
// benchmarks can read what a GPU would be given.
#pragma once

#include <string>
#include <vector>

#include "launch.h"

namespace laplace_attn::emulation {

struct LaunchRecord {
  std::string kernel;
  Grid grid;
  int64_t work;
};

// The launches of the latest emulated operator call.
std::vector<LaunchRecord>& launch_log();

// Whether launches run (true) or are only recorded (for launch plans at sizes
// too large to emulate).
bool& execute_launches();

struct EmulatedLaunch {
  template <class Kernel, class P>
  void launch(const P& p, int64_t work) {
    if (work == 0)
      return;
    const Grid grid = grid_for(work);
    launch_log().push_back({Kernel::kName, grid, work});
    if (!execute_launches())
      return;
    for (int64_t block = 0; block < grid.blocks; ++block) {
      for (int64_t t = 0; t < grid.threads_per_block; ++t) {
        const int64_t thread = block * grid.threads_per_block + t;
        if (thread < work)
          Kernel::run(p, thread);
      }
    }
  }
};

}  // namespace laplace_attn::emulation
