// How a CUDA kernel of this library is written, so that the same body runs on a
// GPU and, in the tests, on the CPU (tests/emulation/emulated_launch.h).
//
// A kernel is a struct with
//   static constexpr const char* kName;
//   template <class P> static LAPLACE_ATTN_HD void run(const P& p, int64_t thread);
// where `thread` is the global index blockIdx.x * blockDim.x + threadIdx.x of a
// one-dimensional grid. Bodies use no shared memory, barriers or warp shuffles:
// every thread is independent, so running the threads one after another is an
// exact execution of the kernel. The __global__ function is a one-line wrapper
// (cuda_launch.cuh).
//
// A launch sequence (which kernels, over which grids, in which order) is a
// function template over a Launch type with
//   template <class Kernel, class P> void launch(const P& p, int64_t work);
// (run Kernel for threads 0..work-1, over the grid grid_for(work)), written once
// in the op's kernel header and run by both launchers.
#pragma once

#include <cstdint>

#include "common.h"

namespace laplace_attn {

struct Grid {
  int64_t blocks = 0;
  int64_t threads_per_block = 0;

  int64_t threads() const { return blocks * threads_per_block; }
};

constexpr int64_t kThreadsPerBlock = 128;

// The grid of every launch: the blocks that cover `work` independent threads.
inline Grid grid_for(int64_t work) {
  return {(work + kThreadsPerBlock - 1) / kThreadsPerBlock, kThreadsPerBlock};
}

// Ceiling division, for chunk and block counts.
LAPLACE_ATTN_HD int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace laplace_attn

namespace laplace_attn::gpu {

// The scratch a launch sequence needs, in elements of the compute type, and
// where it goes in the params: none unless an op's kernel header says otherwise
// (an overload for its params type).
template <class P>
int64_t forward_workspace_elements(const P&) {
  return 0;
}
template <class P>
int64_t backward_workspace_elements(const P&) {
  return 0;
}
template <class P, class T>
void assign_forward_workspace(P&, T*) {}
template <class P, class T>
void assign_backward_workspace(P&, T*) {}

}  // namespace laplace_attn::gpu
