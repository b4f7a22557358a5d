// The CPU kernels of laplace_scan, compiled once per instruction set.
//
// laplace_scan_tiles.cpp is built several times (AVX-512, AVX2, baseline), each
// time into its own namespace; cpu_features.cpp picks one table at run time. The
// kernels see raw pointers only, so no ATen code is ever compiled with wider
// instructions than the machine may have.
#pragma once

#include <cstdint>

#include "cpu/isa_list.h"
#include "cpu/kernel_table.h"
#include "laplace_scan_math.h"

namespace laplace_attn::cpu {

// T: the compute type; A: the storage type of the sequences (u, y, grads).
template <class T, class A = T>
struct LaplaceScanKernels {
  using Params = LaplaceScanParams<T, A>;
  using BackwardParams = LaplaceScanBackwardParams<T, A>;
  // Tasks of the forward and transposed scans: one per (batch, head, channel block).
  int64_t (*num_scan_tasks)(const Params& p);
  void (*forward)(const Params& p, int64_t task_begin, int64_t task_end);
  void (*adjoint)(const BackwardParams& p, int64_t task_begin, int64_t task_end);
  // Tasks of the parameter-gradient pass: one per (head, channel block). Each
  // writes per-channel partial sums that reduce_param_grads then folds.
  int64_t (*num_param_tasks)(const Params& p);
  void (*param_grads)(const BackwardParams& p, int64_t task_begin, int64_t task_end);
};

using LaplaceScanKernelTable = KernelTable<LaplaceScanKernels>;

#define LAPLACE_ATTN_DECLARE_ISA(isa)                   \
  namespace isa {                                       \
  const LaplaceScanKernelTable& laplace_scan_kernels(); \
  }
LAPLACE_ATTN_FOR_EACH_ISA(LAPLACE_ATTN_DECLARE_ISA)
#undef LAPLACE_ATTN_DECLARE_ISA

}  // namespace laplace_attn::cpu
