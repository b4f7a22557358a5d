// The CPU kernels of laplacian_kernel, compiled once per instruction set like
// laplace_scan_tiles.h (inputs padded as cpu/laplacian_layout.h says).
#pragma once

#include <cstdint>

#include "cpu/isa_list.h"
#include "cpu/kernel_table.h"
#include "laplacian_kernel_math.h"

namespace laplace_attn::cpu {

// T: the compute type; A: the storage type of the kernel matrices.
template <class T, class A = T>
struct LaplacianKernelKernels {
  using Params = LaplacianKernelParams<T, A>;
  // Forward tasks: one per (batch, head, block of rows).
  int64_t (*num_forward_tasks)(const Params& p);
  void (*forward)(const Params& p, int64_t task_begin, int64_t task_end);
  // Backward tasks: one per (batch, head, row) for grad_x1 and the weighted
  // distances, then one per (batch, head, column) for grad_x2.
  void (*backward_rows)(const Params& p, int64_t task_begin, int64_t task_end);
  void (*backward_cols)(const Params& p, int64_t task_begin, int64_t task_end);
};

using LaplacianKernelTable = KernelTable<LaplacianKernelKernels>;

#define LAPLACE_ATTN_DECLARE_ISA(isa)                     \
  namespace isa {                                         \
  const LaplacianKernelTable& laplacian_kernel_kernels(); \
  }
LAPLACE_ATTN_FOR_EACH_ISA(LAPLACE_ATTN_DECLARE_ISA)
#undef LAPLACE_ATTN_DECLARE_ISA

}  // namespace laplace_attn::cpu
