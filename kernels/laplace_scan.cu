// CUDA kernels of laplace_scan.
//
// One thread owns one channel of one (batch, head): it runs every node over the
// whole sequence, in blocks of kNodeBlock nodes whose states live in registers,
// and owns its outputs, so there are no atomics and results are deterministic.
// Consecutive threads take consecutive channels, so loads and stores of u and y
// coalesce. The per-step math is the CPU's (laplace_scan_math.h).
#include "laplace_scan_cuda.h"
#include "laplace_scan_math.h"

namespace laplace_attn::cuda {
namespace {

using math::Complex;

constexpr int kThreads = 128;
constexpr int kNodeBlock = 4;

template <class T>
__device__ T gate_of(const LaplaceScanParams<T>& p, int64_t b, int64_t h, int64_t k) {
  return p.gate ? p.gate[(b * p.heads + h) * p.nodes + k] : T(1);
}

template <class T>
__device__ int64_t state_index(const LaplaceScanParams<T>& p, int64_t b, int64_t h, int64_t k,
                               int64_t d) {
  return (((b * p.heads + h) * p.nodes + k) * p.channels + d) * 2;
}

template <class T>
__device__ Complex<T> load_complex(const T* base, int64_t index, bool conjugate) {
  if (base == nullptr)
    return {T(0), T(0)};
  return {base[index], conjugate ? -base[index + 1] : base[index + 1]};
}

struct ForwardStep {
  template <bool kIncludeCurrent, class T>
  __device__ static T apply(Complex<T>& s, T x, T ar, T ai, Complex<T> c) {
    return math::scan_step<kIncludeCurrent>(s, x, ar, ai, c);
  }
};

struct AdjointStep {
  template <bool kIncludeCurrent, class T>
  __device__ static T apply(Complex<T>& s, T x, T ar, T ai, Complex<T> c) {
    return math::scan_adjoint_step<kIncludeCurrent>(s, x, ar, ai, c);
  }
};

// One direction of one channel: out (+)= scan of x over the nodes with gate != 0.
// States enter from state_in and leave to state_out (conjugated for the adjoint);
// switched-off nodes pass their state through.
template <class Step, bool kForwardInTime, bool kIncludeCurrent, class T>
__device__ void sweep_channel(const LaplaceScanParams<T>& p, int64_t b, int64_t h, int64_t d,
                              const T* x, T* out, bool accumulate, const T* coef, const T* state_in,
                              T* state_out, bool conjugate_state) {
  const int64_t stride = p.heads * p.channels;
  const int64_t seq = (b * p.length * p.heads + h) * p.channels + d;
  if (!accumulate) {
    for (int64_t n = 0; n < p.length; ++n)
      out[seq + n * stride] = T(0);
  }
  for (int64_t k0 = 0; k0 < p.nodes; k0 += kNodeBlock) {
    Complex<T> state[kNodeBlock], c[kNodeBlock];
    T ar[kNodeBlock], ai[kNodeBlock];
    bool active[kNodeBlock];
#pragma unroll
    for (int j = 0; j < kNodeBlock; ++j) {
      const int64_t k = k0 + j;
      const T gate = k < p.nodes ? gate_of(p, b, h, k) : T(0);
      active[j] = gate != T(0);
      const int64_t ci = ((h * p.nodes + k) * p.channels + d) * 2;
      c[j] = active[j] ? Complex<T>{gate * coef[ci], gate * coef[ci + 1]} : Complex<T>{0, 0};
      ar[j] = k < p.nodes ? p.pole[(h * p.nodes + k) * 2] : T(0);
      ai[j] = k < p.nodes ? p.pole[(h * p.nodes + k) * 2 + 1] : T(0);
      state[j] = k < p.nodes ? load_complex(state_in, state_index(p, b, h, k, d), conjugate_state)
                             : Complex<T>{0, 0};
    }
    for (int64_t step = 0; step < p.length; ++step) {
      const int64_t n = kForwardInTime ? step : p.length - 1 - step;
      const T xn = x[seq + n * stride];
      T acc = T(0);
#pragma unroll
      for (int j = 0; j < kNodeBlock; ++j) {
        if (active[j])
          acc += Step::template apply<kIncludeCurrent>(state[j], xn, ar[j], ai[j], c[j]);
      }
      out[seq + n * stride] += acc;
    }
    if (state_out == nullptr)
      continue;
#pragma unroll
    for (int j = 0; j < kNodeBlock; ++j) {
      const int64_t k = k0 + j;
      if (k >= p.nodes)
        continue;
      const int64_t si = state_index(p, b, h, k, d);
      const Complex<T> s = active[j] ? state[j] : load_complex(state_in, si, conjugate_state);
      state_out[si] = s.re;
      state_out[si + 1] = conjugate_state ? -s.im : s.im;
    }
  }
}

template <class T>
__global__ void laplace_scan_forward_kernel(LaplaceScanParams<T> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.batch * p.heads * p.channels)
    return;
  const int64_t d = i % p.channels, h = (i / p.channels) % p.heads, b = i / (p.channels * p.heads);
  sweep_channel<ForwardStep, true, true>(p, b, h, d, p.u, p.y, false, p.c_fwd, p.state_fwd,
                                         p.final_fwd, false);
  if (p.bilateral) {
    sweep_channel<ForwardStep, false, false>(p, b, h, d, p.u, p.y, true, p.c_bwd, p.state_bwd,
                                             p.first_bwd, false);
  }
}

template <class T>
__global__ void laplace_scan_adjoint_kernel(LaplaceScanBackwardParams<T> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.batch * p.heads * p.channels)
    return;
  const int64_t d = i % p.channels, h = (i / p.channels) % p.heads, b = i / (p.channels * p.heads);
  sweep_channel<AdjointStep, false, true>(p, b, h, d, p.grad_y, p.grad_u, false, p.c_fwd,
                                          p.grad_final_fwd, p.grad_state_fwd, true);
  if (p.bilateral) {
    sweep_channel<AdjointStep, true, false>(p, b, h, d, p.grad_y, p.grad_u, true, p.c_bwd,
                                            p.grad_first_bwd, p.grad_state_bwd, true);
  }
}

// Parameter sums of one node and channel over one direction of one batch element.
template <bool kForwardInTime, bool kIncludeCurrent, class T>
__device__ void grad_channel(const LaplaceScanBackwardParams<T>& p, int64_t b, int64_t h, int64_t k,
                             int64_t d, const T* coef, const T* state_in, const T* grad_state_out,
                             T* grad_coef) {
  const T gate = gate_of(p, b, h, k);
  const bool want_gate = p.grad_gate != nullptr;
  if (gate == T(0) && !want_gate)
    return;
  const T ar = p.pole[(h * p.nodes + k) * 2], ai = p.pole[(h * p.nodes + k) * 2 + 1];
  const int64_t si = state_index(p, b, h, k, d);
  Complex<T> t = load_complex(state_in, si, false), dt{0, 0}, sum_v{0, 0}, sum_dv{0, 0};
  const int64_t stride = p.heads * p.channels;
  const int64_t seq = (b * p.length * p.heads + h) * p.channels + d;
  for (int64_t step = 0; step < p.length; ++step) {
    const int64_t n = kForwardInTime ? step : p.length - 1 - step;
    math::scan_pole_grad_step<kIncludeCurrent>(t, dt, p.u[seq + n * stride],
                                               p.grad_y[seq + n * stride], ar, ai, sum_v, sum_dv);
  }
  const int64_t ci = ((h * p.nodes + k) * p.channels + d) * 2;
  const Complex<T> c{coef[ci], coef[ci + 1]};
  if (want_gate) {
    p.partial_gate[((b * p.heads + h) * p.nodes + k) * p.channels + d] +=
        math::real_product(c, sum_v);
  }
  if (gate == T(0))
    return;
  if (grad_coef) {
    grad_coef[ci] += gate * sum_v.re;
    grad_coef[ci + 1] -= gate * sum_v.im;
  }
  if (p.partial_pole) {
    T g_re = gate * (c.re * sum_dv.re - c.im * sum_dv.im);
    T g_im = -gate * (c.re * sum_dv.im + c.im * sum_dv.re);
    const Complex<T> go = load_complex(grad_state_out, si, false);
    g_re += dt.re * go.re + dt.im * go.im;
    g_im += dt.re * go.im - dt.im * go.re;
    p.partial_pole[ci] += g_re;
    p.partial_pole[ci + 1] += g_im;
  }
}

template <class T>
__global__ void laplace_scan_param_grads_kernel(LaplaceScanBackwardParams<T> p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.heads * p.nodes * p.channels)
    return;
  const int64_t d = i % p.channels, k = (i / p.channels) % p.nodes, h = i / (p.channels * p.nodes);
  for (int64_t b = 0; b < p.batch; ++b) {
    grad_channel<true, true>(p, b, h, k, d, p.c_fwd, p.state_fwd, p.grad_final_fwd, p.grad_c_fwd);
    if (p.bilateral) {
      grad_channel<false, false>(p, b, h, k, d, p.c_bwd, p.state_bwd, p.grad_first_bwd,
                                 p.grad_c_bwd);
    }
  }
}

// One thread per (head, node) folds the per-channel partials.
template <class T>
__global__ void laplace_scan_reduce_kernel(LaplaceScanBackwardParams<T> p) {
  const int64_t hk = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (hk < p.heads * p.nodes)
    math::reduce_node_param_grads(p, hk);
}

unsigned int blocks_for(int64_t threads) {
  return static_cast<unsigned int>((threads + kThreads - 1) / kThreads);
}

}  // namespace

template <class T>
cudaError_t launch_laplace_scan_forward(const LaplaceScanParams<T>& p, cudaStream_t stream) {
  const int64_t threads = p.batch * p.heads * p.channels;
  if (threads == 0)
    return cudaSuccess;
  laplace_scan_forward_kernel<T><<<blocks_for(threads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_laplace_scan_adjoint(const LaplaceScanBackwardParams<T>& p,
                                        cudaStream_t stream) {
  const int64_t threads = p.batch * p.heads * p.channels;
  if (threads == 0)
    return cudaSuccess;
  laplace_scan_adjoint_kernel<T><<<blocks_for(threads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_laplace_scan_param_grads(const LaplaceScanBackwardParams<T>& p,
                                            cudaStream_t stream) {
  const int64_t threads = p.heads * p.nodes * p.channels;
  if (threads > 0) {
    laplace_scan_param_grads_kernel<T><<<blocks_for(threads), kThreads, 0, stream>>>(p);
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
      return status;
  }
  const int64_t pairs = p.heads * p.nodes;
  if (pairs == 0)
    return cudaSuccess;
  laplace_scan_reduce_kernel<T><<<blocks_for(pairs), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

#define LAPLACE_ATTN_INSTANTIATE(T)                                                               \
  template cudaError_t launch_laplace_scan_forward<T>(const LaplaceScanParams<T>&, cudaStream_t); \
  template cudaError_t launch_laplace_scan_adjoint<T>(const LaplaceScanBackwardParams<T>&,        \
                                                      cudaStream_t);                              \
  template cudaError_t launch_laplace_scan_param_grads<T>(const LaplaceScanBackwardParams<T>&,    \
                                                          cudaStream_t);

LAPLACE_ATTN_INSTANTIATE(float)
LAPLACE_ATTN_INSTANTIATE(double)

}  // namespace laplace_attn::cuda
