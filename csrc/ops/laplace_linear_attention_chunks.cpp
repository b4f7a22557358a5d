// The chunked algorithm of laplace_linear_attention, forward and backward, in
// ATen operations (so it runs on every device; GEMMs go to the device's BLAS).
//
// Tokens are split into chunks of L = kChunk. Inside a chunk the work is a
// masked GEMM, ((X Y^T) * W) Z with W[i, j] the lag kernel at i - j; across
// chunks each node carries a complex [Dy, Dz] state, read out and updated with
// one GEMM per chunk over all nodes at once (the node index and the real and
// imaginary parts are stacked into the contraction). So the work is
// O(N * S * Dy * Dz + N * L * (Dy + Dz)) and the memory O(N * D + S * Dy * Dz).
//
// Layouts: sequences [BH, N, D] in the compute type T; states
// [BH, S, 2, Dy, Dz] (node, re/im, rows, columns), viewed as [BH, S*2*Dy, Dz]
// for the GEMMs; complex per-node values as (re, im) pairs of [BH, S, ...].
//
// The backward recomputes the states instead of storing them:
//   dq = the same sweep with (x, y, z) = (dy, v, k),
//   dk, dv = the sweep with the kernel transposed (lower and upper triangles
//     swapped, the diagonal in the upper one), (v, dy, q) and (k, q, dy),
//   pole and readout gradients from Z_k = sum_t q_t^T F_k(t) dy_t and its
//     derivative in a_k, carried across chunks with the states' derivatives.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ops/dtype_policy.h"
#include "ops/laplace_linear_attention.h"

namespace laplace_attn {
namespace {

constexpr int64_t kChunk = 64;

struct Complex {
  at::Tensor re, im;
};

Complex operator*(const Complex& a, const Complex& b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
Complex operator+(const Complex& a, const Complex& b) {
  return {a.re + b.re, a.im + b.im};
}
Complex conj(const Complex& a) {
  return {a.re, -a.im};
}
Complex scaled(const Complex& a, const at::Tensor& s) {
  return {a.re * s, a.im * s};
}

// The sizes of one call and the pole powers every sweep reads.
struct Problem {
  int64_t B = 0, N = 0, H = 0, S = 0, BH = 0;
  at::ScalarType T = at::kFloat;
  at::Tensor decay64, freq64;  // [H, S]
  Complex pow;                 // a^tau, tau = 0..L, [BH, S, L + 1]
  Complex dpow;                // tau * a^(tau - 1) (0 at tau = 0), the same shape

  // [H, S, ...] -> [BH, S, ...] for every batch entry.
  at::Tensor per_batch(const at::Tensor& t) const {
    std::vector<int64_t> sizes = t.sizes().vec();
    std::vector<int64_t> expanded{B};
    expanded.insert(expanded.end(), sizes.begin(), sizes.end());
    sizes[0] = BH;
    return t.unsqueeze(0).expand(expanded).reshape(sizes);
  }

  // a^e for a float64 vector of exponents e, formed from decay and freq in
  // float64 (never by repeated products): [BH, S, len] in T.
  Complex powers_at(const at::Tensor& exponents) const {
    const at::Tensor e = exponents.to(at::kDouble).view({1, 1, -1});
    const at::Tensor radius = at::exp(-decay64.unsqueeze(-1) * e);
    const at::Tensor angle = freq64.unsqueeze(-1) * e;
    return {per_batch((radius * at::cos(angle)).to(T)),
            per_batch((-radius * at::sin(angle)).to(T))};
  }

  Complex node_weight(const at::Tensor& c, const std::optional<at::Tensor>& gate) const {
    Complex w{per_batch(c.select(-1, 0).to(T)), per_batch(c.select(-1, 1).to(T))};
    if (gate)
      w = scaled(w, gate->to(T).reshape({BH, S}));
    return w;
  }
};

Problem make_problem(const at::Tensor& q, const at::Tensor& decay, const at::Tensor& freq) {
  Problem p;
  p.B = q.size(0);
  p.N = q.size(1);
  p.H = q.size(2);
  p.S = decay.size(1);
  p.BH = p.B * p.H;
  p.T = compute_type_for(q.scalar_type());
  p.decay64 = decay.to(at::kDouble);
  p.freq64 = freq.to(at::kDouble);
  const at::Tensor tau = at::arange(kChunk + 1, decay.options().dtype(at::kDouble));
  p.pow = p.powers_at(tau);
  const Complex previous = p.powers_at((tau - 1).clamp_min(0));
  const at::Tensor factor = tau.to(p.T).view({1, 1, -1});
  p.dpow = scaled(previous, factor);
  return p;
}

// [B, N, H, D] in any dtype -> [BH, N, D] in T, and back.
at::Tensor to_heads(const Problem& p, const at::Tensor& x) {
  return x.permute({0, 2, 1, 3}).to(p.T).reshape({p.BH, p.N, x.size(3)}).contiguous();
}

at::Tensor from_heads(const Problem& p, const at::Tensor& x, at::ScalarType dtype) {
  return x.view({p.B, p.H, p.N, x.size(2)}).permute({0, 2, 1, 3}).to(dtype).contiguous();
}

// [B, H, S, Dy, Dz, 2] -> [BH, S, 2, Dy, Dz] in T, and back.
at::Tensor state_in(const Problem& p, const at::Tensor& s) {
  return s.permute({0, 1, 2, 5, 3, 4})
      .to(p.T)
      .reshape({p.BH, p.S, 2, s.size(3), s.size(4)})
      .contiguous();
}

at::Tensor state_out(const Problem& p, const at::Tensor& s, at::ScalarType dtype) {
  return s.view({p.B, p.H, p.S, 2, s.size(3), s.size(4)})
      .permute({0, 1, 2, 4, 5, 3})
      .to(dtype)
      .contiguous();
}

// The powers of exponents [first, first + len) with step +1 or -1, [BH, len, S]
// (token-major, as the GEMM helpers take them), sliced from a table.
Complex table_slice(const Complex& table, int64_t first, int64_t len, bool descending) {
  auto slice = [&](const at::Tensor& t) {
    at::Tensor s = descending ? t.narrow(2, first - len + 1, len).flip(2) : t.narrow(2, first, len);
    return s.transpose(1, 2);
  };
  return {slice(table.re), slice(table.im)};
}

// x [BH, Lc, D] times per-token node weights w [BH, Lc, S] -> [BH, Lc, S*2*D]
// in (node, re/im, channel) order, matching the stacked state layout.
at::Tensor stacked(const at::Tensor& x, const Complex& w) {
  const at::Tensor parts = at::stack({w.re, w.im}, -1).unsqueeze(-1);  // [BH, Lc, S, 2, 1]
  return (parts * x.unsqueeze(2).unsqueeze(2)).flatten(2);
}

at::Tensor as_matrix(const at::Tensor& state) {
  return state.view({state.size(0), -1, state.size(4)});
}

// sum_k Re(w_k(t) x_t^T Z_k) for every token: one GEMM over all nodes.
at::Tensor readout(const at::Tensor& x, const Complex& w, const at::Tensor& state) {
  return at::bmm(stacked(x, conj(w)), as_matrix(state));
}

// sum_t w_k(t) y_t z_t^T as a state [BH, S, 2, Dy, Dz].
at::Tensor outer_sum(const at::Tensor& y, const Complex& w, const at::Tensor& z, int64_t S) {
  return at::bmm(stacked(y, w).transpose(1, 2), z).view({y.size(0), S, 2, y.size(2), z.size(2)});
}

// c_k * Z_k for a complex scalar c per (batch-head, node).
at::Tensor rotated(const at::Tensor& state, const Complex& c) {
  const at::Tensor re = state.select(2, 0), im = state.select(2, 1);
  const at::Tensor cr = c.re.view({c.re.size(0), c.re.size(1), 1, 1});
  const at::Tensor ci = c.im.view({c.im.size(0), c.im.size(1), 1, 1});
  return at::stack({cr * re - ci * im, cr * im + ci * re}, 2);
}

// sum over the state's entries of T_k * F_k (complex, no conjugate): [BH, S].
Complex entry_product(const at::Tensor& t, const at::Tensor& f) {
  const at::Tensor tr = t.select(2, 0), ti = t.select(2, 1);
  const at::Tensor fr = f.select(2, 0), fi = f.select(2, 1);
  return {(tr * fr - ti * fi).sum({2, 3}), (tr * fi + ti * fr).sum({2, 3})};
}

Complex column(const Complex& table, int64_t tau) {
  return {table.re.select(2, tau), table.im.select(2, tau)};
}

// The lag kernel K(tau) = Re sum_k w_k a_k^tau for tau = 0..L, [BH, L + 1].
at::Tensor lag_kernel(const Problem& p, const Complex& w) {
  return (w.re.unsqueeze(-1) * p.pow.re - w.im.unsqueeze(-1) * p.pow.im).sum(1);
}

// W[i, j] for i, j < min(L, N): the lower kernel at i - j below the diagonal, the upper
// one at j - i above; the diagonal takes the lower kernel's tau = 0 when
// diag_lower, else the upper one's.
at::Tensor intra_weights(const Problem& p, const std::optional<Complex>& wl,
                         const std::optional<Complex>& wu, bool diag_lower) {
  const auto options = p.pow.re.options();
  const int64_t size = std::min(kChunk, p.N);  // the longest chunk
  const at::Tensor i = at::arange(size, options.dtype(at::kLong)).view({-1, 1});
  const at::Tensor j = i.view({1, -1});
  const at::Tensor lag = (i - j).abs().flatten();
  at::Tensor w = at::zeros({p.BH, size, size}, options);
  const at::Tensor lower = diag_lower ? (i >= j) : (i > j);
  if (wl)
    w = at::where(lower, lag_kernel(p, *wl).index_select(1, lag).view_as(w), w);
  if (wu)
    w = at::where(lower.logical_not(), lag_kernel(p, *wu).index_select(1, lag).view_as(w), w);
  return w;
}

struct ChunkRange {
  int64_t start, length;
};

std::vector<ChunkRange> chunks_of(int64_t N) {
  std::vector<ChunkRange> chunks;
  for (int64_t t0 = 0; t0 < N; t0 += kChunk)
    chunks.push_back({t0, std::min(kChunk, N - t0)});
  return chunks;
}

struct SweepResult {
  at::Tensor out, final_lower, first_upper;
};

// a^len * state + added, where an undefined state is zero (most sweeps start
// from none, and short sequences then never form a state at all).
at::Tensor advanced(const at::Tensor& state, const Complex& pole_power, const at::Tensor& added) {
  return state.defined() ? rotated(state, pole_power) + added : added;
}

at::Tensor zeros_if_undefined(const at::Tensor& state, const Problem& p, int64_t Dy, int64_t Dz,
                              const at::TensorOptions& options) {
  return state.defined() ? state : at::zeros({p.BH, p.S, 2, Dy, Dz}, options);
}

// out_t = sum_k Re(wl_k x_t^T L_k(t)) + Re(wu_k x_t^T U_k(t)) with
//   L_k(t) = sum_{s <= t} a^(t-s) y_s z_s^T + a^(t+1) init_lower,
//   U_k(t) = sum_{s > t} a^(s-t) y_s z_s^T + a^(N-t) init_upper,
// the diagonal s = t moved from L to U when !diag_lower. An undefined init is
// zero. With want_states, also returns L(N-1) and U(-1)/a (the anticausal state
// at the first token; init_upper, or zeros, when there is no upper readout).
SweepResult sweep(const Problem& p, const at::Tensor& x, const at::Tensor& y, const at::Tensor& z,
                  const std::optional<Complex>& wl, const std::optional<Complex>& wu,
                  bool diag_lower, at::Tensor lower_state, at::Tensor upper_state,
                  bool want_states) {
  const auto chunks = chunks_of(p.N);
  const int64_t last = static_cast<int64_t>(chunks.size()) - 1;
  at::Tensor out = at::empty({p.BH, p.N, z.size(2)}, x.options());
  const at::Tensor w = intra_weights(p, wl, wu, diag_lower);
  for (int64_t c = 0; c <= last; ++c) {
    const auto [t0, len] = chunks[c];
    const at::Tensor xc = x.narrow(1, t0, len), yc = y.narrow(1, t0, len),
                     zc = z.narrow(1, t0, len);
    const at::Tensor scores =
        at::bmm(xc, yc.transpose(1, 2)) * w.narrow(1, 0, len).narrow(2, 0, len);
    at::Tensor oc = at::bmm(scores, zc);
    if (wl && lower_state.defined()) {
      const Complex weight{wl->re.unsqueeze(1), wl->im.unsqueeze(1)};
      oc += readout(xc, table_slice(p.pow, 1, len, false) * weight, lower_state);
    }
    if (wl && (c < last || want_states)) {
      lower_state = advanced(lower_state, column(p.pow, len),
                             outer_sum(yc, table_slice(p.pow, len - 1, len, true), zc, p.S));
    }
    out.narrow(1, t0, len).copy_(oc);
  }
  if (wu) {
    for (int64_t c = last; c >= 0; --c) {
      const auto [t0, len] = chunks[c];
      const at::Tensor xc = x.narrow(1, t0, len), yc = y.narrow(1, t0, len),
                       zc = z.narrow(1, t0, len);
      if (upper_state.defined()) {
        const Complex weight{wu->re.unsqueeze(1), wu->im.unsqueeze(1)};
        out.narrow(1, t0, len) +=
            readout(xc, table_slice(p.pow, len, len, true) * weight, upper_state);
      }
      if (c > 0 || want_states) {
        upper_state = advanced(upper_state, column(p.pow, len),
                               outer_sum(yc, table_slice(p.pow, 0, len, false), zc, p.S));
      }
    }
  }
  if (!want_states)
    return {out, at::Tensor(), at::Tensor()};
  return {out, zeros_if_undefined(lower_state, p, y.size(2), z.size(2), x.options()),
          zeros_if_undefined(upper_state, p, y.size(2), z.size(2), x.options())};
}

// conj(a_k)^e(t) per token of chunk [t0, t0 + len), e(t) = offset + sign * t:
// [BH, len, S].
Complex boundary_weights(const Problem& p, int64_t t0, int64_t len, int64_t offset, int64_t sign) {
  const at::Tensor t = at::arange(t0, t0 + len, p.decay64.options());
  const Complex a = p.powers_at(t * static_cast<double>(sign) + static_cast<double>(offset));
  return conj({a.re.transpose(1, 2), a.im.transpose(1, 2)});
}

// sum_k Re(conj(a_k)^e(t) x_t^T Z_k) added to out, for every token.
void add_boundary_readout(const Problem& p, at::Tensor& out, const at::Tensor& x,
                          const at::Tensor& z_state, int64_t offset, int64_t sign) {
  for (const auto& [t0, len] : chunks_of(p.N)) {
    out.narrow(1, t0, len) +=
        readout(x.narrow(1, t0, len), boundary_weights(p, t0, len, offset, sign), z_state);
  }
}

// sum_t conj(a_k)^e(t) y_t z_t^T as a state.
at::Tensor boundary_outer_sum(const Problem& p, const at::Tensor& y, const at::Tensor& z,
                              int64_t offset, int64_t sign) {
  at::Tensor acc = at::zeros({p.BH, p.S, 2, y.size(2), z.size(2)}, y.options());
  for (const auto& [t0, len] : chunks_of(p.N)) {
    acc += outer_sum(y.narrow(1, t0, len), boundary_weights(p, t0, len, offset, sign),
                     z.narrow(1, t0, len), p.S);
  }
  return acc;
}

at::Tensor transposed_state(const at::Tensor& s) {
  return s.transpose(3, 4).contiguous();
}

at::Tensor conj_state(const at::Tensor& s) {
  return at::stack({s.select(2, 0), s.select(2, 1).neg()}, 2);
}

// Z = sum_t q_t^T F(t) dy_t and dZ/da for the causal and anticausal states,
// and the pairings of the final/first state gradients with dF/da, dG/da.
struct ParamSums {
  Complex z_fwd, dz_fwd, z_bwd, dz_bwd, final_pairing, first_pairing;
};

// Diagonal sums of a [BH, len, len] matrix: lower lags 0..len-1, then upper
// lags 0..len-1 (upper lag 0 is always zero). A scatter-add sums each row in
// index order whatever the thread count; a GEMM with a 0/1 matrix did not (the
// BLAS splits its long contraction across threads).
at::Tensor lag_sums(const at::Tensor& m, int64_t len) {
  const auto options = m.options().dtype(at::kLong);
  const at::Tensor i = at::arange(len, options).view({-1, 1});
  const at::Tensor j = i.view({1, -1});
  const at::Tensor column = at::where(i >= j, i - j, len + (j - i)).flatten();
  const at::Tensor flat = m.reshape({m.size(0), len * len});
  return at::zeros({m.size(0), 2 * len}, m.options())
      .scatter_add_(1, column.view({1, -1}).expand_as(flat), flat);
}

Complex lag_series(const Complex& table, const at::Tensor& sums, int64_t first, int64_t len) {
  // sum_tau table[tau] * sums[tau] over tau in [first, len).
  const at::Tensor s = sums.narrow(1, first, len - first).unsqueeze(1);
  return {(table.re.narrow(2, first, len - first) * s).sum(2),
          (table.im.narrow(2, first, len - first) * s).sum(2)};
}

ParamSums param_sums(const Problem& p, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, const at::Tensor& dy, bool bilateral,
                     const at::Tensor& state_fwd, const at::Tensor& state_bwd,
                     const at::Tensor& grad_final, const at::Tensor& grad_first) {
  const auto zeros_bs = [&] { return at::zeros({p.BH, p.S}, q.options()); };
  ParamSums r{{zeros_bs(), zeros_bs()}, {zeros_bs(), zeros_bs()}, {zeros_bs(), zeros_bs()},
              {zeros_bs(), zeros_bs()}, {zeros_bs(), zeros_bs()}, {zeros_bs(), zeros_bs()}};
  const auto accumulate = [](Complex& sum, const at::Tensor& t, const at::Tensor& state) {
    if (state.defined())
      sum = sum + entry_product(t, state);
  };
  const auto chunks = chunks_of(p.N);
  const int64_t last = static_cast<int64_t>(chunks.size()) - 1;
  // f = F entering the chunk and df = dF/da; undefined means zero.
  at::Tensor f = state_fwd, df;
  for (int64_t c = 0; c <= last; ++c) {
    const auto [t0, len] = chunks[c];
    const at::Tensor qc = q.narrow(1, t0, len), kc = k.narrow(1, t0, len),
                     vc = v.narrow(1, t0, len), gc = dy.narrow(1, t0, len);
    const at::Tensor pairs = at::bmm(qc, kc.transpose(1, 2)) * at::bmm(gc, vc.transpose(1, 2));
    const at::Tensor sums = lag_sums(pairs, len);
    r.z_fwd = r.z_fwd + lag_series(p.pow, sums, 0, len);
    r.dz_fwd = r.dz_fwd + lag_series(p.dpow, sums, 0, len);
    if (bilateral) {
      const at::Tensor upper = sums.narrow(1, len, len);
      r.z_bwd = r.z_bwd + lag_series(p.pow, upper, 1, len);
      r.dz_bwd = r.dz_bwd + lag_series(p.dpow, upper, 1, len);
    }
    if (f.defined()) {
      const at::Tensor t1 = outer_sum(qc, table_slice(p.pow, 1, len, false), gc, p.S);
      const at::Tensor t2 = outer_sum(qc, table_slice(p.dpow, 1, len, false), gc, p.S);
      accumulate(r.z_fwd, t1, f);
      accumulate(r.dz_fwd, t2, f);
      accumulate(r.dz_fwd, t1, df);
    }
    if (c == last && !grad_final.defined())
      break;
    at::Tensor next_df = outer_sum(kc, table_slice(p.dpow, len - 1, len, true), vc, p.S);
    if (f.defined())
      next_df = next_df + rotated(f, column(p.dpow, len));
    df = advanced(df, column(p.pow, len), next_df);
    f = advanced(f, column(p.pow, len),
                 outer_sum(kc, table_slice(p.pow, len - 1, len, true), vc, p.S));
  }
  if (grad_final.defined() && df.defined())
    r.final_pairing = conj(entry_product(conj_state(grad_final), df));
  if (!bilateral)
    return r;
  at::Tensor g = state_bwd, dg;
  for (int64_t c = last; c >= 0; --c) {
    const auto [t0, len] = chunks[c];
    const at::Tensor qc = q.narrow(1, t0, len), kc = k.narrow(1, t0, len),
                     vc = v.narrow(1, t0, len), gc = dy.narrow(1, t0, len);
    if (g.defined()) {
      const at::Tensor t1 = outer_sum(qc, table_slice(p.pow, len, len, true), gc, p.S);
      const at::Tensor t2 = outer_sum(qc, table_slice(p.dpow, len, len, true), gc, p.S);
      accumulate(r.z_bwd, t1, g);
      accumulate(r.dz_bwd, t2, g);
      accumulate(r.dz_bwd, t1, dg);
    }
    if (c == 0 && !grad_first.defined())
      break;
    at::Tensor next_dg = outer_sum(kc, table_slice(p.dpow, 0, len, false), vc, p.S);
    if (g.defined())
      next_dg = next_dg + rotated(g, column(p.dpow, len));
    dg = advanced(dg, column(p.pow, len), next_dg);
    g = advanced(g, column(p.pow, len), outer_sum(kc, table_slice(p.pow, 0, len, false), vc, p.S));
  }
  if (grad_first.defined() && dg.defined())
    r.first_pairing = conj(entry_product(conj_state(grad_first), dg));
  return r;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention_chunked(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, bool return_states) {
  if (is_linear_attention_decode_step(q, c_bwd, state_fwd))
    return laplace_linear_attention_decode_step(q, k, v, decay, freq, c_fwd, gate, *state_fwd,
                                                return_states);
  const Problem p = make_problem(q, decay, freq);
  std::optional<Complex> wb;
  if (c_bwd)
    wb = p.node_weight(*c_bwd, gate);
  SweepResult r =
      sweep(p, to_heads(p, q), to_heads(p, k), to_heads(p, v), p.node_weight(c_fwd, gate), wb,
            /*diag_lower=*/true, state_fwd ? state_in(p, *state_fwd) : at::Tensor(),
            state_bwd ? state_in(p, *state_bwd) : at::Tensor(), return_states);
  const at::Tensor y = from_heads(p, r.out, q.scalar_type());
  if (!return_states) {
    // Two distinct empties: outputs of a custom op may not alias one another.
    const auto options = q.options().dtype(p.T);
    return {y, at::empty({0}, options), at::empty({0}, options)};
  }
  return {y, state_out(p, r.final_lower, p.T), state_out(p, r.first_upper, p.T)};
}

LinearAttentionGrads laplace_linear_attention_backward_chunked(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    LinearAttentionGradMask mask) {
  const Problem p = make_problem(q, decay, freq);
  const bool bilateral = c_bwd.has_value();
  const at::Tensor qh = to_heads(p, q), kh = to_heads(p, k), vh = to_heads(p, v),
                   gh = to_heads(p, grad_y);
  const Complex wf = p.node_weight(c_fwd, gate);
  std::optional<Complex> wb;
  if (bilateral)
    wb = p.node_weight(*c_bwd, gate);
  const at::Tensor s_fwd = state_fwd ? state_in(p, *state_fwd) : at::Tensor();
  const at::Tensor s_bwd = state_bwd ? state_in(p, *state_bwd) : at::Tensor();
  const at::Tensor g_final = grad_final_fwd ? state_in(p, *grad_final_fwd) : at::Tensor();
  const at::Tensor g_first =
      grad_first_bwd && bilateral ? state_in(p, *grad_first_bwd) : at::Tensor();
  const auto transposed_or_none = [](const at::Tensor& s) {
    return s.defined() ? transposed_state(s) : at::Tensor();
  };

  at::Tensor grad_q, grad_k, grad_v, grad_decay, grad_freq, grad_c_fwd, grad_c_bwd, grad_gate,
      grad_state_fwd, grad_state_bwd;
  if (mask[kLinGradQ]) {
    const at::Tensor dq = sweep(p, gh, vh, kh, wf, wb, true, transposed_or_none(s_fwd),
                                transposed_or_none(s_bwd), /*want_states=*/false)
                              .out;
    grad_q = from_heads(p, dq, q.scalar_type());
  }
  // dk and dv: the kernel transposed, plus what the returned states saw of them.
  const auto transposed_sweep = [&](const at::Tensor& x, const at::Tensor& y, const at::Tensor& z,
                                    bool transpose_states) {
    at::Tensor out = sweep(p, x, y, z, wb, wf, false, at::Tensor(), at::Tensor(), false).out;
    if (g_final.defined())
      add_boundary_readout(p, out, x, transpose_states ? transposed_state(g_final) : g_final,
                           p.N - 1, -1);
    if (g_first.defined())
      add_boundary_readout(p, out, x, transpose_states ? transposed_state(g_first) : g_first, 0, 1);
    return out;
  };
  if (mask[kLinGradK])
    grad_k = from_heads(p, transposed_sweep(vh, gh, qh, true), k.scalar_type());
  if (mask[kLinGradV])
    grad_v = from_heads(p, transposed_sweep(kh, qh, gh, false), v.scalar_type());

  const Complex a_n =
      conj(column(p.powers_at(at::full({1}, static_cast<double>(p.N), p.decay64.options())), 0));
  const Complex a_1 = column(p.pow, 1);
  if (mask[kLinGradStateFwd]) {
    at::Tensor ds = rotated(boundary_outer_sum(p, qh, gh, 0, 1), conj(wf * a_1));
    if (g_final.defined())
      ds = ds + rotated(g_final, a_n);
    grad_state_fwd = state_out(p, ds, state_fwd->scalar_type());
  }
  if (mask[kLinGradStateBwd] && bilateral) {
    at::Tensor ds = rotated(boundary_outer_sum(p, qh, gh, p.N - 1, -1), conj(*wb * a_1));
    if (g_first.defined())
      ds = ds + rotated(g_first, a_n);
    grad_state_bwd = state_out(p, ds, state_bwd->scalar_type());
  }

  const bool wants_params = mask[kLinGradDecay] || mask[kLinGradFreq] || mask[kLinGradCFwd] ||
                            mask[kLinGradCBwd] || mask[kLinGradGate];
  if (wants_params) {
    const ParamSums r = param_sums(p, qh, kh, vh, gh, bilateral, s_fwd, s_bwd, g_final, g_first);
    // The reductions over the batch run in float64, in a fixed order.
    const auto per_bhs = [&](const Complex& z) {
      return Complex{z.re.to(at::kDouble).view({p.B, p.H, p.S}),
                     z.im.to(at::kDouble).view({p.B, p.H, p.S})};
    };
    const at::Tensor g64 =
        gate ? gate->to(at::kDouble) : at::ones({p.B, p.H, p.S}, p.decay64.options());
    const auto coefficient = [](const at::Tensor& c) {
      const at::Tensor c64 = c.to(at::kDouble);
      return Complex{c64.select(-1, 0).unsqueeze(0), c64.select(-1, 1).unsqueeze(0)};
    };
    const Complex zf = per_bhs(r.z_fwd), dzf = per_bhs(r.dz_fwd);
    const Complex cf = coefficient(c_fwd);
    Complex dpole = conj(scaled(cf * dzf, g64)) + per_bhs(r.final_pairing);
    at::Tensor dgate = (cf * zf).re;
    if (mask[kLinGradCFwd]) {
      const Complex g = scaled(conj(zf), g64);
      grad_c_fwd = at::stack({g.re.sum(0), g.im.sum(0)}, -1).to(c_fwd.scalar_type());
    }
    if (bilateral) {
      const Complex zb = per_bhs(r.z_bwd), dzb = per_bhs(r.dz_bwd);
      const Complex cb = coefficient(*c_bwd);
      dpole = dpole + conj(scaled(cb * dzb, g64)) + per_bhs(r.first_pairing);
      dgate = dgate + (cb * zb).re;
      if (mask[kLinGradCBwd]) {
        const Complex g = scaled(conj(zb), g64);
        grad_c_bwd = at::stack({g.re.sum(0), g.im.sum(0)}, -1).to(c_bwd->scalar_type());
      }
    }
    if (mask[kLinGradGate] && gate)
      grad_gate = dgate.to(gate->scalar_type());
    // a = exp(-decay - i freq): da/d(decay) = -a, da/d(freq) = -i a.
    const at::Tensor g_re = dpole.re.sum(0), g_im = dpole.im.sum(0);
    const at::Tensor radius = at::exp(-p.decay64);
    const at::Tensor ar = radius * at::cos(p.freq64), ai = -radius * at::sin(p.freq64);
    if (mask[kLinGradDecay])
      grad_decay = (-(g_re * ar + g_im * ai)).to(decay.scalar_type());
    if (mask[kLinGradFreq])
      grad_freq = (-(g_im * ar - g_re * ai)).to(freq.scalar_type());
  }
  return {grad_q,     grad_k,     grad_v,    grad_decay,     grad_freq,
          grad_c_fwd, grad_c_bwd, grad_gate, grad_state_fwd, grad_state_bwd};
}

}  // namespace laplace_attn
