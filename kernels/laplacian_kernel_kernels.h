// laplacian_kernel's CUDA kernel bodies and launch sequences (the form of
// kernels/launch.h), run on a GPU by laplacian_kernel.cu and on the CPU by the
// tests' launch emulator. The forward gives each thread one (i, j) entry (the
// column fastest, so the [B, H, N, M] stores coalesce); the backward gives each
// thread one row of x1 (grad_x1 and the weighted distance) or one row of x2
// (grad_x2), so every output has one writer and results are deterministic.
#pragma once

#include <cmath>
#include <cstdint>

#include "laplacian_kernel_math.h"
#include "launch.h"

namespace laplace_attn::gpu {

struct KernelForward {
  static constexpr const char* kName = "kernel_forward";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t index) {
    using T = typename P::compute_type;
    using A = typename P::activation_type;
    const int64_t N = p.rows, M = p.cols, D = p.dim;
    const int64_t j = index % M, i = index / M % N, bh = index / (N * M);
    const T* a = p.x1 + (bh * N + i) * D;
    const T* b = p.x2 + (bh * M + j) * D;
    T distance = T(0);
    for (int64_t d = 0; d < D; ++d)
      distance += fabs(a[d] - b[d]);
    p.out[index] = from_compute<A>(exp(-p.inv_lambda[bh % p.heads] * distance));
  }
};

// out = -inv_lambda * sum_c w(c) sign(a - b_c) with w = grad * kernel; returns
// sum_c w(c) ||a - b_c||_1.
template <class T, class A>
LAPLACE_ATTN_HD T signed_weighted_sum(const T* a, const T* b, int64_t count, int64_t D,
                                      const A* grad, const A* kernel, int64_t stride, T inv_lambda,
                                      T* out) {
  for (int64_t d = 0; d < D; ++d)
    out[d] = T(0);
  T distance = T(0);
  for (int64_t c = 0; c < count; ++c) {
    const T w = to_compute<T>(grad[c * stride]) * to_compute<T>(kernel[c * stride]);
    if (w == T(0))
      continue;
    for (int64_t d = 0; d < D; ++d) {
      const T diff = a[d] - b[c * D + d];
      out[d] += w * math::sign_of(diff);
      distance += w * fabs(diff);
    }
  }
  for (int64_t d = 0; d < D; ++d)
    out[d] *= -inv_lambda;
  return distance;
}

struct KernelBackwardRows {
  static constexpr const char* kName = "kernel_backward_rows";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t index) {
    const int64_t N = p.rows, M = p.cols, D = p.dim, bh = index / N;
    const auto distance = signed_weighted_sum(p.x1 + index * D, p.x2 + bh * M * D, M, D,
                                              p.grad + index * M, p.kernel + index * M, 1,
                                              p.inv_lambda[bh % p.heads], p.grad_x1 + index * D);
    if (p.row_weighted_distance)
      p.row_weighted_distance[index] = distance;
  }
};

struct KernelBackwardCols {
  static constexpr const char* kName = "kernel_backward_cols";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t index) {
    const int64_t N = p.rows, M = p.cols, D = p.dim, bh = index / M, j = index % M;
    signed_weighted_sum(p.x2 + index * D, p.x1 + bh * N * D, N, D, p.grad + bh * N * M + j,
                        p.kernel + bh * N * M + j, M, p.inv_lambda[bh % p.heads],
                        p.grad_x2 + index * D);
  }
};

struct KernelReduceLambda {
  static constexpr const char* kName = "kernel_reduce_lambda";

  template <class P>
  static LAPLACE_ATTN_HD void run(const P& p, int64_t h) {
    math::reduce_inv_lambda_grad(p, h);
  }
};

template <class Launch, class T, class A>
void launch_forward(Launch& launch, const LaplacianKernelParams<T, A>& p) {
  launch.template launch<KernelForward>(p, p.batch * p.heads * p.rows * p.cols);
}

template <class Launch, class T, class A>
void launch_backward(Launch& launch, const LaplacianKernelParams<T, A>& p) {
  const int64_t BH = p.batch * p.heads;
  if (p.grad_x1 || p.row_weighted_distance)  // grad_x1 is null when D = 0
    launch.template launch<KernelBackwardRows>(p, BH * p.rows);
  if (p.grad_x2)
    launch.template launch<KernelBackwardCols>(p, BH * p.cols);
  if (p.grad_inv_lambda)
    launch.template launch<KernelReduceLambda>(p, p.heads);
}

}  // namespace laplace_attn::gpu
