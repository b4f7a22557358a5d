// The CPU kernels of laplacian_attention, compiled once per instruction set like
// laplace_scan_tiles.h. D and E arrive padded to multiples of kLaplacianPadDim.
#pragma once

#include <cstdint>

#include "cpu/isa_list.h"
#include "cpu/kernel_table.h"
#include "laplacian_attention_math.h"

namespace laplace_attn::cpu {

// T: the compute type; A: the storage type of q, k, v, out and their gradients.
template <class T, class A = T>
struct LaplacianAttentionKernels {
  using Params = LaplacianAttentionParams<T, A>;
  // One task per (batch, head, query row) for the forward, delta and grad_q; one
  // per (batch, head, key row) for grad_k and grad_v.
  void (*forward)(const Params& p, int64_t task_begin, int64_t task_end);
  void (*row_deltas)(const Params& p, int64_t task_begin, int64_t task_end);
  void (*backward_queries)(const Params& p, int64_t task_begin, int64_t task_end);
  void (*backward_keys)(const Params& p, int64_t task_begin, int64_t task_end);
};

using LaplacianAttentionTable = KernelTable<LaplacianAttentionKernels>;

#define LAPLACE_ATTN_DECLARE_ISA(isa)                           \
  namespace isa {                                               \
  const LaplacianAttentionTable& laplacian_attention_kernels(); \
  }
LAPLACE_ATTN_FOR_EACH_ISA(LAPLACE_ATTN_DECLARE_ISA)
#undef LAPLACE_ATTN_DECLARE_ISA

}  // namespace laplace_attn::cpu
