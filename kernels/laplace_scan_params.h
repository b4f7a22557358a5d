// Raw-pointer description of one laplace_scan call, shared by the CPU and CUDA
// kernels. The ATen-facing code fills it from validated, contiguous tensors:
// parameters and states in the compute type T (float, or double for double
// inputs); the sequences (u, y and their gradients) in their storage type A: T
// itself, or bfloat16_storage / float16_storage, read in place and computed on
// in T.
#pragma once

#include <cstdint>

#include "common.h"

namespace laplace_attn {

template <class T, class A = T>
struct LaplaceScanParams {
  using compute_type = T;
  using activation_type = A;

  int64_t batch = 0;     // B
  int64_t length = 0;    // N
  int64_t heads = 0;     // H
  int64_t nodes = 0;     // S
  int64_t channels = 0;  // D
  bool bilateral = false;

  const A* u = nullptr;          // [B, N, H, D]
  const T* pole = nullptr;       // [H, S, 2]   a = exp(-decay) * exp(-i freq)
  const T* c_fwd = nullptr;      // [H, S, D, 2]
  const T* c_bwd = nullptr;      // [H, S, D, 2], null unless bilateral
  const T* gate = nullptr;       // [B, H, S], null means all ones
  const T* state_fwd = nullptr;  // [B, H, S, D, 2], null means zeros
  const T* state_bwd = nullptr;  // [B, H, S, D, 2], null means zeros

  A* y = nullptr;          // [B, N, H, D]
  T* final_fwd = nullptr;  // [B, H, S, D, 2]
  T* first_bwd = nullptr;  // [B, H, S, D, 2], null unless bilateral
};

template <class T, class A = T>
struct LaplaceScanBackwardParams : LaplaceScanParams<T, A> {
  const A* grad_y = nullptr;          // [B, N, H, D]
  const T* grad_final_fwd = nullptr;  // [B, H, S, D, 2], null means zeros
  const T* grad_first_bwd = nullptr;  // [B, H, S, D, 2], null means zeros

  // Outputs; a null pointer means "not requested".
  A* grad_u = nullptr;          // [B, N, H, D]
  T* grad_state_fwd = nullptr;  // [B, H, S, D, 2]
  T* grad_state_bwd = nullptr;  // [B, H, S, D, 2]
  T* grad_c_fwd = nullptr;      // [H, S, D, 2]
  T* grad_c_bwd = nullptr;      // [H, S, D, 2]
  T* grad_decay = nullptr;      // [H, S]
  T* grad_freq = nullptr;       // [H, S]
  T* grad_gate = nullptr;       // [B, H, S]

  // Per-channel partial sums that the parameter-gradient pass reduces over
  // channels in a fixed order, so results do not depend on the thread count.
  T* partial_pole = nullptr;  // [H, S, D, 2]  dL/da per channel, summed over B
  T* partial_gate = nullptr;  // [B, H, S, D]  dL/dgate per channel
};

}  // namespace laplace_attn
