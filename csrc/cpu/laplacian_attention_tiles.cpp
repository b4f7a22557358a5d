// CPU kernels of laplacian_attention for one instruction set.
//
// A task owns one query row (forward, grad_q) or one key row (grad_k, grad_v)
// and walks the other side, vectorised over the feature dimension. The
// logits of the row go to a scratch row first, so their maximum is known before
// any exponential is taken: every weight is exp(s - s_max) <= 1 and the row sum
// is >= 1, whatever the distances. Memory is O(N)
// per thread; the N x M matrix never exists.
#include "cpu/laplacian_attention_tiles.h"
#include "cpu/simd.h"
#include "laplacian_kernel_math.h"  // kLaplacianPadCols

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

template <class T>
T l1_distance(const T* a, const T* b, int64_t D) {
  Vec<T> acc{};
  for (int64_t d = 0; d < D; d += kLanes<T>) {
    acc += abs_lanes<T>(load_lanes(a + d, kLanes<T>) - load_lanes(b + d, kLanes<T>));
  }
  return sum_lanes<T>(acc);
}

template <class T>
T dot(const T* a, const T* b, int64_t E) {
  Vec<T> acc{};
  for (int64_t e = 0; e < E; e += kLanes<T>) {
    acc += load_lanes(a + e, kLanes<T>) * load_lanes(b + e, kLanes<T>);
  }
  return sum_lanes<T>(acc);
}

// dst += w * src over E values.
template <class T>
void axpy(T* dst, T w, const T* src, int64_t E) {
  for (int64_t e = 0; e < E; e += kLanes<T>) {
    store_lanes(dst + e, load_lanes(dst + e, kLanes<T>) + w * load_lanes(src + e, kLanes<T>),
                kLanes<T>);
  }
}

// dst += w * sign(a - b) over D values.
template <class T>
void add_signed(T* dst, T w, const T* a, const T* b, int64_t D) {
  for (int64_t d = 0; d < D; d += kLanes<T>) {
    const Vec<T> s = sign_lanes<T>(load_lanes(a + d, kLanes<T>) - load_lanes(b + d, kLanes<T>));
    store_lanes(dst + d, load_lanes(dst + d, kLanes<T>) + w * s, kLanes<T>);
  }
}

template <class T>
T key_bias(const LaplacianAttentionParams<T>& p, int64_t b, int64_t j) {
  return p.key_bias == nullptr ? T(0) : p.key_bias[b * p.keys + j];
}

template <class T>
bool visible(const LaplacianAttentionParams<T>& p, int64_t b, int64_t i, int64_t j) {
  if (p.causal && j > i)
    return false;
  return key_bias(p, b, j) != -__builtin_inf();
}

// Where the rows of one (batch, head) live.
template <class T>
struct Head {
  int64_t b, h, bh;
  const T *q, *k, *v;
  T inv_lambda;
  Head(const LaplacianAttentionParams<T>& p, int64_t bh_)
      : b(bh_ / p.heads),
        h(bh_ % p.heads),
        bh(bh_),
        q(p.q + bh_ * p.queries * p.dim),
        k(p.k + bh_ * p.keys * p.dim),
        v(p.v + bh_ * p.keys * p.value_dim),
        inv_lambda(p.inv_lambda[bh_ % p.heads]) {}
};

// The distances from one query to every key, L keys at a time against the
// transposed keys, so no horizontal sum is needed.
template <class T>
void row_distances(const T* qi, const T* k_t, int64_t D, int64_t M, int64_t M_padded, T* distance) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t j0 = 0; j0 < M; j0 += L) {
    Vec<T> acc{};
    for (int64_t d = 0; d < D; ++d) {
      acc += abs_lanes<T>(qi[d] - load_lanes(k_t + d * M_padded + j0, L));
    }
    store_lanes(distance + j0, acc, L);
  }
}

template <class T>
void forward(const LaplacianAttentionParams<T>& p, int64_t task_begin, int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  const int64_t M_padded = ceil_div(M, kLaplacianPadCols) * kLaplacianPadCols;
  Buffer<T> distance(M_padded);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T> hd(p, task / N);
    const int64_t i = task % N;
    T* out = p.out + task * E;
    for (int64_t e = 0; e < E; ++e)
      out[e] = T(0);
    T* logit = distance.get();
    row_distances(hd.q + i * D, p.k_t + hd.bh * D * M_padded, D, M, M_padded, logit);
    T s_max = T(0);
    bool any = false;
    for (int64_t j = 0; j < M; ++j) {
      if (!visible(p, hd.b, i, j))
        continue;
      logit[j] = -hd.inv_lambda * logit[j] + key_bias(p, hd.b, j);
      s_max = any && s_max > logit[j] ? s_max : logit[j];
      any = true;
    }
    if (!any) {
      p.lse[task] = -__builtin_inf();
      continue;
    }
    T sum = 0;
    for (int64_t j = 0; j < M; ++j) {
      if (!visible(p, hd.b, i, j))
        continue;
      const T w = exp_scalar(logit[j] - s_max);
      sum += w;
      axpy(out, w, hd.v + j * E, E);
    }
    const T inv = T(1) / sum;
    for (int64_t e = 0; e < E; ++e)
      out[e] *= inv;
    p.lse[task] = s_max + log_scalar(sum);
  }
}

template <class T>
void backward_queries(const LaplacianAttentionParams<T>& p, int64_t task_begin, int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T> hd(p, task / N);
    const int64_t i = task % N;
    const T* qi = hd.q + i * D;
    const T* dout = p.grad_out + task * E;
    T* dq = p.grad_q + task * D;
    for (int64_t d = 0; d < D; ++d)
      dq[d] = T(0);
    T lambda_sum = 0;
    const T lse = p.saved_lse[task];
    if (lse == -__builtin_inf()) {
      if (p.row_grad_lambda)
        p.row_grad_lambda[task] = T(0);
      continue;
    }
    for (int64_t j = 0; j < M; ++j) {
      if (!visible(p, hd.b, i, j))
        continue;
      const T* kj = hd.k + j * D;
      const T dist = l1_distance(qi, kj, D);
      const T prob = exp_scalar(-hd.inv_lambda * dist + key_bias(p, hd.b, j) - lse);
      const T ds = prob * (dot(dout, hd.v + j * E, E) - p.delta[task]);
      add_signed(dq, -hd.inv_lambda * ds, qi, kj, D);
      lambda_sum -= ds * dist;
    }
    if (p.row_grad_lambda)
      p.row_grad_lambda[task] = lambda_sum;
  }
}

template <class T>
void backward_keys(const LaplacianAttentionParams<T>& p, int64_t task_begin, int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T> hd(p, task / M);
    const int64_t j = task % M;
    const T* kj = hd.k + j * D;
    T* dk = p.grad_k + task * D;
    T* dv = p.grad_v + task * E;
    for (int64_t d = 0; d < D; ++d)
      dk[d] = T(0);
    for (int64_t e = 0; e < E; ++e)
      dv[e] = T(0);
    const int64_t row0 = hd.bh * N;
    const T bias = key_bias(p, hd.b, j);
    for (int64_t i = p.causal ? j : 0; i < N; ++i) {
      if (!visible(p, hd.b, i, j))
        continue;
      const T lse = p.saved_lse[row0 + i];
      const T* qi = hd.q + i * D;
      const T* dout = p.grad_out + (row0 + i) * E;
      const T prob = exp_scalar(-hd.inv_lambda * l1_distance(qi, kj, D) + bias - lse);
      const T ds = prob * (dot(dout, hd.v + j * E, E) - p.delta[row0 + i]);
      axpy(dv, prob, dout, E);
      add_signed(dk, hd.inv_lambda * ds, qi, kj, D);
    }
  }
}

template <class T>
LaplacianAttentionKernels<T> kernels_for() {
  return {&forward<T>, &backward_queries<T>, &backward_keys<T>};
}

}  // namespace

const LaplacianAttentionTable& laplacian_attention_kernels() {
  static const LaplacianAttentionTable table{kernels_for<float>(), kernels_for<double>()};
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
