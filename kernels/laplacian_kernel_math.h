// Per-element math of laplacian_kernel, shared by the CPU and CUDA kernels:
// K(q, k) = exp(-inv_lambda * ||q - k||_1).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace laplace_attn {

// T: the compute type; A: the storage type of the [B, H, N, M] kernel matrices
// (out, grad, kernel), which are read and written in place. The inputs x1, x2
// arrive in T, a copy the size of the inputs (not of the matrices), padded for
// the CPU (csrc/cpu/laplacian_layout.h).
template <class T, class A = T>
struct LaplacianKernelParams {
  using compute_type = T;
  using activation_type = A;

  int64_t batch = 0, heads = 0, rows = 0, cols = 0, dim = 0;  // B, H, N, M, D
  const T* x1 = nullptr;                                      // [B, H, N, D]
  const T* x2 = nullptr;                                      // [B, H, M, D]
  const T* x2_t = nullptr;        // [B, H, D, M padded], x2 transposed (CPU forward)
  const T* inv_lambda = nullptr;  // [H] (a scalar is expanded)
  A* out = nullptr;               // [B, H, N, M]

  // Backward: W = grad * K; grad_x1 = -inv_lambda * sum_j W_ij sign(x1_i - x2_j),
  // grad_x2 = -inv_lambda * sum_i W_ij sign(x2_j - x1_i),
  // grad_inv_lambda = -sum_ij W_ij ||x1_i - x2_j||_1.
  const A* grad = nullptr;             // [B, H, N, M]
  const A* kernel = nullptr;           // [B, H, N, M], the forward output
  T* grad_x1 = nullptr;                // [B, H, N, D]
  T* grad_x2 = nullptr;                // [B, H, M, D]
  T* row_weighted_distance = nullptr;  // [B, H, N]: sum_j W_ij ||x1_i - x2_j||_1
  T* grad_inv_lambda = nullptr;        // [H]
};

namespace math {

// dL/d(inv_lambda) of head h: -sum over batch and rows of the weighted distances,
// in float64 and a fixed order.
template <class T, class A>
LAPLACE_ATTN_HD void reduce_inv_lambda_grad(const LaplacianKernelParams<T, A>& p, int64_t h) {
  double sum = 0;
  for (int64_t b = 0; b < p.batch; ++b) {
    const T* row = p.row_weighted_distance + (b * p.heads + h) * p.rows;
    for (int64_t i = 0; i < p.rows; ++i)
      sum += row[i];
  }
  p.grad_inv_lambda[h] = static_cast<T>(-sum);
}

}  // namespace math
}  // namespace laplace_attn
