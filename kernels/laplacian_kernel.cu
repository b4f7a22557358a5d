// CUDA kernels of laplacian_kernel. The forward gives each thread one (i, j)
// pair; the backward gives each thread one row of x1 (grad_x1 and the weighted
// distance) or one row of x2 (grad_x2), so every output has a single writer and
// results are deterministic. The math is laplacian_kernel_math.h.
#include "laplacian_kernel_cuda.h"

namespace laplace_attn::cuda {
namespace {

constexpr int kThreads = 128;

template <class T>
__global__ void laplacian_kernel_forward_kernel(LaplacianKernelParams<T> p) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.rows, M = p.cols, D = p.dim;
  if (index >= p.batch * p.heads * N * M)
    return;
  const int64_t j = index % M, i = (index / M) % N, bh = index / (N * M);
  const T* a = p.x1 + (bh * N + i) * D;
  const T* b = p.x2 + (bh * M + j) * D;
  T distance = 0;
  for (int64_t d = 0; d < D; ++d)
    distance += fabs(a[d] - b[d]);
  p.out[index] = exp(-p.inv_lambda[bh % p.heads] * distance);
}

// out = -inv_lambda * sum_c w(c) sign(a - b_c); returns sum_c w(c) ||a - b_c||_1.
template <class T>
__device__ T signed_weighted_sum(const T* a, const T* b, int64_t count, int64_t D, const T* grad,
                                 const T* kernel, int64_t stride, T inv_lambda, T* out) {
  for (int64_t d = 0; d < D; ++d)
    out[d] = 0;
  T distance = 0;
  for (int64_t c = 0; c < count; ++c) {
    const T w = grad[c * stride] * kernel[c * stride];
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

template <class T>
__global__ void laplacian_kernel_rows_kernel(LaplacianKernelParams<T> p) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.rows, M = p.cols, D = p.dim;
  if (index >= p.batch * p.heads * N)
    return;
  const int64_t bh = index / N;
  const T distance = signed_weighted_sum(p.x1 + index * D, p.x2 + bh * M * D, M, D,
                                         p.grad + index * M, p.kernel + index * M, 1,
                                         p.inv_lambda[bh % p.heads], p.grad_x1 + index * D);
  if (p.row_weighted_distance)
    p.row_weighted_distance[index] = distance;
}

template <class T>
__global__ void laplacian_kernel_cols_kernel(LaplacianKernelParams<T> p) {
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.rows, M = p.cols, D = p.dim;
  if (index >= p.batch * p.heads * M)
    return;
  const int64_t bh = index / M, j = index % M;
  signed_weighted_sum(p.x2 + index * D, p.x1 + bh * N * D, N, D, p.grad + bh * N * M + j,
                      p.kernel + bh * N * M + j, M, p.inv_lambda[bh % p.heads],
                      p.grad_x2 + index * D);
}

template <class T>
__global__ void laplacian_kernel_lambda_kernel(LaplacianKernelParams<T> p) {
  const int64_t h = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (h < p.heads)
    math::reduce_inv_lambda_grad(p, h);
}

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

}  // namespace

template <class T>
cudaError_t launch_laplacian_kernel_forward(const LaplacianKernelParams<T>& p,
                                            cudaStream_t stream) {
  const int64_t n = p.batch * p.heads * p.rows * p.cols;
  if (n == 0)
    return cudaSuccess;
  laplacian_kernel_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_laplacian_kernel_backward(const LaplacianKernelParams<T>& p,
                                             cudaStream_t stream) {
  const int64_t BH = p.batch * p.heads;
  if (p.grad_x1 && BH * p.rows > 0) {
    laplacian_kernel_rows_kernel<T><<<blocks_for(BH * p.rows), kThreads, 0, stream>>>(p);
  }
  if (p.grad_x2 && BH * p.cols > 0) {
    laplacian_kernel_cols_kernel<T><<<blocks_for(BH * p.cols), kThreads, 0, stream>>>(p);
  }
  if (p.grad_inv_lambda && p.heads > 0) {
    laplacian_kernel_lambda_kernel<T><<<blocks_for(p.heads), kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template cudaError_t launch_laplacian_kernel_forward<float>(const LaplacianKernelParams<float>&,
                                                            cudaStream_t);
template cudaError_t launch_laplacian_kernel_forward<double>(const LaplacianKernelParams<double>&,
                                                             cudaStream_t);
template cudaError_t launch_laplacian_kernel_backward<float>(const LaplacianKernelParams<float>&,
                                                             cudaStream_t);
template cudaError_t launch_laplacian_kernel_backward<double>(const LaplacianKernelParams<double>&,
                                                              cudaStream_t);

}  // namespace laplace_attn::cuda
