// CPU kernels of laplacian_attention for one instruction set.
//
// A task owns one query row (forward, grad_q) or one key row (grad_k, grad_v)
// and walks the other side, vectorised over the feature dimension. The
// logits of the row go to a scratch row first, so their maximum is known before
// any exponential is taken: every weight is exp(s - s_max) <= 1 and the row sum
// is >= 1, whatever the distances. Memory is O(N)
// per thread; the N x M matrix never exists.
#include "cpu/laplacian_attention_tiles.h"
#include "cpu/laplacian_layout.h"
#include "cpu/simd.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

// The vectors of a and b (storage A) are read as T: D and E are padded to whole
// vectors on the CPU.
template <class T, class A>
T l1_distance(const A* a, const A* b, int64_t D) {
  Vec<T> acc{};
  for (int64_t d = 0; d < D; d += kLanes<T>) {
    acc += abs_lanes<T>(load_as<T>(a + d, kLanes<T>) - load_as<T>(b + d, kLanes<T>));
  }
  return sum_lanes<T>(acc);
}

template <class T, class A>
T dot(const A* a, const A* b, int64_t E) {
  Vec<T> acc{};
  for (int64_t e = 0; e < E; e += kLanes<T>) {
    acc += load_as<T>(a + e, kLanes<T>) * load_as<T>(b + e, kLanes<T>);
  }
  return sum_lanes<T>(acc);
}

// dst += w * src over E values; dst is a compute-type accumulator.
template <class T, class A>
void axpy(T* dst, T w, const A* src, int64_t E) {
  for (int64_t e = 0; e < E; e += kLanes<T>) {
    store_lanes(dst + e, load_lanes(dst + e, kLanes<T>) + w * load_as<T>(src + e, kLanes<T>),
                kLanes<T>);
  }
}

// dst += w * sign(a - b) over D values.
template <class T, class A>
void add_signed(T* dst, T w, const A* a, const A* b, int64_t D) {
  for (int64_t d = 0; d < D; d += kLanes<T>) {
    const Vec<T> s = sign_lanes<T>(load_as<T>(a + d, kLanes<T>) - load_as<T>(b + d, kLanes<T>));
    store_lanes(dst + d, load_lanes(dst + d, kLanes<T>) + w * s, kLanes<T>);
  }
}

// A compute-type accumulator row written to storage A, times scale.
template <class T, class A>
void store_row(A* dst, const T* acc, T scale, int64_t n) {
  for (int64_t e = 0; e < n; e += kLanes<T>)
    store_as<T>(dst + e, scale * load_lanes(acc + e, kLanes<T>), kLanes<T>);
}

template <class T, class P>
T key_bias(const P& p, int64_t b, int64_t j) {
  return p.key_bias == nullptr ? T(0) : p.key_bias[b * p.keys + j];
}

template <class T, class P>
bool visible(const P& p, int64_t b, int64_t i, int64_t j) {
  if (!math::causally_visible(p, i, j))
    return false;
  return key_bias<T>(p, b, j) != -__builtin_inf();
}

// Where the rows of one (batch, head) live.
template <class T, class A>
struct Head {
  int64_t b, h, bh;
  const A *q, *k, *v;
  T inv_lambda;
  Head(const LaplacianAttentionParams<T, A>& p, int64_t bh_)
      : b(bh_ / p.heads),
        h(bh_ % p.heads),
        bh(bh_),
        q(p.q + bh_ * p.queries * p.dim),
        k(key_row(p, bh_, 0)),
        v(value_row(p, bh_, 0)),
        inv_lambda(p.inv_lambda[bh_ % p.heads]) {}
};

// The distances from one query to every key, L keys at a time against the
// transposed keys, so no horizontal sum is needed.
template <class T, class A>
void row_distances(const T* qi, const A* k_t, int64_t D, int64_t M, int64_t M_padded, T* distance) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t j0 = 0; j0 < M; j0 += L) {
    Vec<T> acc{};
    for (int64_t d = 0; d < D; ++d) {
      acc += abs_lanes<T>(qi[d] - load_as<T>(k_t + d * M_padded + j0, L));
    }
    store_lanes(distance + j0, acc, L);
  }
}

template <class T, class A>
void forward(const LaplacianAttentionParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  const int64_t M_padded = ceil_div(M, kLaplacianPadCols) * kLaplacianPadCols;
  Buffer<T> distance(M_padded), query(D), out(E);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T, A> hd(p, task / N);
    const int64_t i = task % N;
    for (int64_t e = 0; e < E; ++e)
      out[e] = T(0);
    for (int64_t d = 0; d < D; d += kLanes<T>)
      store_lanes(query.get() + d, load_as<T>(hd.q + i * D + d, kLanes<T>), kLanes<T>);
    T* logit = distance.get();
    if (p.k_t != nullptr) {
      row_distances(query.get(), p.k_t + hd.bh * D * M_padded, D, M, M_padded, logit);
    } else {
      for (int64_t j = 0; j < M; ++j)
        logit[j] = l1_distance<T, A>(hd.q + i * D, hd.k + j * D, D);
    }
    T s_max = T(0);
    bool any = false;
    for (int64_t j = 0; j < M; ++j) {
      if (!visible<T>(p, hd.b, i, j))
        continue;
      logit[j] = -hd.inv_lambda * logit[j] + key_bias<T>(p, hd.b, j);
      s_max = any && s_max > logit[j] ? s_max : logit[j];
      any = true;
    }
    if (!any) {
      store_row(p.out + task * E, out.get(), T(1), E);
      p.lse[task] = -__builtin_inf();
      continue;
    }
    T sum = 0;
    for (int64_t j = 0; j < M; ++j) {
      if (!visible<T>(p, hd.b, i, j))
        continue;
      const T w = exp_scalar(logit[j] - s_max);
      sum += w;
      axpy(out.get(), w, hd.v + j * E, E);
    }
    store_row(p.out + task * E, out.get(), T(1) / sum, E);
    p.lse[task] = s_max + log_scalar(sum);
  }
}

// delta_i = dO_i . O_i for every row, from the saved output.
template <class T, class A>
void row_deltas(const LaplacianAttentionParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  const int64_t E = p.value_dim;
  for (int64_t task = task_begin; task < task_end; ++task)
    p.delta[task] = dot<T>(p.grad_out + task * E, p.saved_out + task * E, E);
}

template <class T, class A>
void backward_queries(const LaplacianAttentionParams<T, A>& p, int64_t task_begin,
                      int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  Buffer<T> dq(D);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T, A> hd(p, task / N);
    const int64_t i = task % N;
    const A* qi = hd.q + i * D;
    const A* dout = p.grad_out + task * E;
    for (int64_t d = 0; d < D; ++d)
      dq[d] = T(0);
    T lambda_sum = 0;
    const T lse = p.saved_lse[task];
    for (int64_t j = 0; lse != -__builtin_inf() && j < M; ++j) {
      if (!visible<T>(p, hd.b, i, j))
        continue;
      const A* kj = hd.k + j * D;
      const T dist = l1_distance<T>(qi, kj, D);
      const T prob = exp_scalar(-hd.inv_lambda * dist + key_bias<T>(p, hd.b, j) - lse);
      const T ds = prob * (dot<T>(dout, hd.v + j * E, E) - p.delta[task]);
      add_signed(dq.get(), -hd.inv_lambda * ds, qi, kj, D);
      lambda_sum -= ds * dist;
    }
    store_row(p.grad_q + task * D, dq.get(), T(1), D);
    if (p.row_grad_lambda)
      p.row_grad_lambda[task] = lambda_sum;
  }
}

template <class T, class A>
void backward_keys(const LaplacianAttentionParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  const int64_t N = p.queries, M = p.keys, D = p.dim, E = p.value_dim;
  Buffer<T> dk(D), dv(E);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Head<T, A> hd(p, task / M);
    const int64_t j = task % M;
    const A* kj = hd.k + j * D;
    for (int64_t d = 0; d < D; ++d)
      dk[d] = T(0);
    for (int64_t e = 0; e < E; ++e)
      dv[e] = T(0);
    const int64_t row0 = hd.bh * N;
    const T bias = key_bias<T>(p, hd.b, j);
    for (int64_t i = math::first_query_seeing(p, j); i < N; ++i) {
      if (!visible<T>(p, hd.b, i, j))
        continue;
      const T lse = p.saved_lse[row0 + i];
      const A* qi = hd.q + i * D;
      const A* dout = p.grad_out + (row0 + i) * E;
      const T prob = exp_scalar(-hd.inv_lambda * l1_distance<T>(qi, kj, D) + bias - lse);
      const T ds = prob * (dot<T>(dout, hd.v + j * E, E) - p.delta[row0 + i]);
      axpy(dv.get(), prob, dout, E);
      add_signed(dk.get(), hd.inv_lambda * ds, qi, kj, D);
    }
    store_row(p.grad_k + task * D, dk.get(), T(1), D);
    store_row(p.grad_v + task * E, dv.get(), T(1), E);
  }
}

template <class T, class A>
LaplacianAttentionKernels<T, A> kernels_for() {
  return {&forward<T, A>, &row_deltas<T, A>, &backward_queries<T, A>, &backward_keys<T, A>};
}

}  // namespace

const LaplacianAttentionTable& laplacian_attention_kernels() {
  static const LaplacianAttentionTable table = LAPLACE_ATTN_KERNEL_TABLE(kernels_for);
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
