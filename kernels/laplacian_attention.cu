// CUDA kernels of laplacian_attention: one thread per query row (forward,
// grad_q) or key row (grad_k, grad_v), each the only writer of its outputs. The
// forward keeps a running maximum logit and rescales its partial sums when it
// rises (online softmax), so no scratch row is needed. Correctness first: these
// kernels are compile-checked here and not yet tuned on a GPU.
#include "laplacian_attention_cuda.h"

namespace laplace_attn::cuda {
namespace {

constexpr int kThreads = 128;

template <class T>
__device__ T key_bias(const LaplacianAttentionParams<T>& p, int64_t b, int64_t j) {
  return p.key_bias == nullptr ? T(0) : p.key_bias[b * p.keys + j];
}

template <class T>
__device__ bool visible(const LaplacianAttentionParams<T>& p, int64_t b, int64_t i, int64_t j) {
  if (p.causal && j > i)
    return false;
  return key_bias(p, b, j) != -INFINITY;
}

template <class T>
__device__ T l1_distance(const T* a, const T* b, int64_t D) {
  T s = 0;
  for (int64_t d = 0; d < D; ++d)
    s += fabs(a[d] - b[d]);
  return s;
}

template <class T>
__device__ T dot(const T* a, const T* b, int64_t E) {
  T s = 0;
  for (int64_t e = 0; e < E; ++e)
    s += a[e] * b[e];
  return s;
}

template <class T>
__device__ T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <class T>
__global__ void forward_kernel(LaplacianAttentionParams<T> p) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  if (row >= p.batch * p.heads * N)
    return;
  const int64_t bh = row / N, i = row % N, b = bh / p.heads;
  const T lam = p.inv_lambda[bh % p.heads];
  const T* qi = p.q + row * D;
  T* out = p.out + row * E;
  for (int64_t e = 0; e < E; ++e)
    out[e] = 0;
  T s_max = 0, sum = 0;
  bool any = false;
  for (int64_t j = 0; j < M; ++j) {
    if (!visible(p, b, i, j))
      continue;
    const T s = -lam * l1_distance(qi, p.k + (bh * M + j) * D, D) + key_bias(p, b, j);
    if (!any || s > s_max) {
      const T rescale = any ? exp(s_max - s) : T(0);
      for (int64_t e = 0; e < E; ++e)
        out[e] *= rescale;
      sum *= rescale;
      s_max = s;
      any = true;
    }
    const T w = exp(s - s_max);
    sum += w;
    const T* vj = p.v + (bh * M + j) * E;
    for (int64_t e = 0; e < E; ++e)
      out[e] += w * vj[e];
  }
  if (!any) {
    p.lse[row] = -INFINITY;
    return;
  }
  for (int64_t e = 0; e < E; ++e)
    out[e] /= sum;
  p.lse[row] = s_max + log(sum);
}

template <class T>
__global__ void backward_queries_kernel(LaplacianAttentionParams<T> p) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  if (row >= p.batch * p.heads * N)
    return;
  const int64_t bh = row / N, i = row % N, b = bh / p.heads;
  const T lam = p.inv_lambda[bh % p.heads];
  const T* qi = p.q + row * D;
  T* dq = p.grad_q + row * D;
  for (int64_t d = 0; d < D; ++d)
    dq[d] = 0;
  T lambda_sum = 0;
  const T lse = p.saved_lse[row];
  for (int64_t j = 0; lse != -INFINITY && j < M; ++j) {
    if (!visible(p, b, i, j))
      continue;
    const T* kj = p.k + (bh * M + j) * D;
    const T dist = l1_distance(qi, kj, D);
    const T prob = exp(-lam * dist + key_bias(p, b, j) - lse);
    const T ds = prob * (dot(p.grad_out + row * E, p.v + (bh * M + j) * E, E) - p.delta[row]);
    for (int64_t d = 0; d < D; ++d)
      dq[d] -= lam * ds * sign_of(qi[d] - kj[d]);
    lambda_sum -= ds * dist;
  }
  if (p.row_grad_lambda)
    p.row_grad_lambda[row] = lambda_sum;
}

template <class T>
__global__ void backward_keys_kernel(LaplacianAttentionParams<T> p) {
  const int64_t key = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  if (key >= p.batch * p.heads * M)
    return;
  const int64_t bh = key / M, j = key % M, b = bh / p.heads;
  const T lam = p.inv_lambda[bh % p.heads];
  const T* kj = p.k + key * D;
  T* dk = p.grad_k + key * D;
  T* dv = p.grad_v + key * E;
  for (int64_t d = 0; d < D; ++d)
    dk[d] = 0;
  for (int64_t e = 0; e < E; ++e)
    dv[e] = 0;
  for (int64_t i = p.causal ? j : 0; i < N; ++i) {
    if (!visible(p, b, i, j))
      continue;
    const int64_t row = bh * N + i;
    const T* qi = p.q + row * D;
    const T* dout = p.grad_out + row * E;
    const T prob = exp(-lam * l1_distance(qi, kj, D) + key_bias(p, b, j) - p.saved_lse[row]);
    const T ds = prob * (dot(dout, p.v + key * E, E) - p.delta[row]);
    for (int64_t e = 0; e < E; ++e)
      dv[e] += prob * dout[e];
    for (int64_t d = 0; d < D; ++d)
      dk[d] += lam * ds * sign_of(qi[d] - kj[d]);
  }
}

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

}  // namespace

template <class T>
cudaError_t launch_laplacian_attention_forward(const LaplacianAttentionParams<T>& p,
                                               cudaStream_t stream) {
  const int64_t rows = p.batch * p.heads * p.queries;
  if (rows == 0)
    return cudaSuccess;
  forward_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_laplacian_attention_backward(const LaplacianAttentionParams<T>& p,
                                                cudaStream_t stream) {
  const int64_t rows = p.batch * p.heads * p.queries, keys = p.batch * p.heads * p.keys;
  if (p.grad_q && rows > 0) {
    backward_queries_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(p);
  }
  if (p.grad_k && keys > 0) {
    backward_keys_kernel<T><<<blocks_for(keys), kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template cudaError_t launch_laplacian_attention_forward<float>(
    const LaplacianAttentionParams<float>&, cudaStream_t);
template cudaError_t launch_laplacian_attention_forward<double>(
    const LaplacianAttentionParams<double>&, cudaStream_t);
template cudaError_t launch_laplacian_attention_backward<float>(
    const LaplacianAttentionParams<float>&, cudaStream_t);
template cudaError_t launch_laplacian_attention_backward<double>(
    const LaplacianAttentionParams<double>&, cudaStream_t);

}  // namespace laplace_attn::cuda
