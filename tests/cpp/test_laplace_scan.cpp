// The C++ API on its own, no Python: laplace_attn::laplace_scan against a
// direct O(N^2) sum written here, and its backward through torch::autograd.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <complex>
#include <string>

#include "catch2_compat.h"
#include "laplace_attn/ops.h"

namespace {

using cd = std::complex<double>;

struct Problem {
  int64_t B = 2, N = 45, H = 2, D = 5, S = 3;
  at::Tensor u, decay, freq, c_fwd, c_bwd;

  explicit Problem(at::ScalarType dtype) {
    at::manual_seed(7);
    const auto opts = at::TensorOptions().dtype(at::kDouble);
    u = at::randn({B, N, H, D}, opts).to(dtype);
    decay = (at::rand({H, S}, opts) * 0.4 + 0.05).to(dtype);
    freq = (at::rand({H, S}, opts) * 2.0 - 1.0).to(dtype);
    c_fwd = (at::randn({H, S, D, 2}, opts) / S).to(dtype);
    c_bwd = (at::randn({H, S, D, 2}, opts) / S).to(dtype);
  }
};

// y[b, n, h, d] = sum_k Re(c+ sum_{m<=n} a^(n-m) u_m) + Re(c- sum_{m>n} a^(m-n) u_m).
at::Tensor reference(const Problem& p) {
  at::Tensor y = at::zeros({p.B, p.N, p.H, p.D}, at::kDouble);
  const at::Tensor u64 = p.u.to(at::kDouble), decay64 = p.decay.to(at::kDouble),
                   freq64 = p.freq.to(at::kDouble), cf64 = p.c_fwd.to(at::kDouble),
                   cb64 = p.c_bwd.to(at::kDouble);
  auto u = u64.accessor<double, 4>();
  auto decay = decay64.accessor<double, 2>();
  auto freq = freq64.accessor<double, 2>();
  auto cf = cf64.accessor<double, 4>();
  auto cb = cb64.accessor<double, 4>();
  auto out = y.accessor<double, 4>();
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t k = 0; k < p.S; ++k) {
        const cd log_a(-decay[h][k], -freq[h][k]);
        for (int64_t d = 0; d < p.D; ++d) {
          const cd c_plus(cf[h][k][d][0], cf[h][k][d][1]);
          const cd c_minus(cb[h][k][d][0], cb[h][k][d][1]);
          for (int64_t n = 0; n < p.N; ++n) {
            cd acc = 0;
            for (int64_t m = 0; m < p.N; ++m) {
              const double lag = static_cast<double>(n - m);
              const cd power = std::exp(std::abs(lag) * log_a);
              acc += (m <= n ? c_plus : c_minus) * power * u[b][m][h][d];
            }
            out[b][n][h][d] += acc.real();
          }
        }
      }
  return y;
}

double max_rel_error(const at::Tensor& a, const at::Tensor& b) {
  const double scale = b.abs().max().item<double>();
  return (a.to(at::kDouble) - b).abs().max().item<double>() / scale;
}

}  // namespace

TEST_CASE("laplace_scan forward matches a direct sum", "[laplace_scan]") {
  for (auto [dtype, tol] : {std::pair{at::kDouble, 1e-10}, std::pair{at::kFloat, 1e-5}}) {
    Problem p(dtype);
    auto [y, final_fwd, first_bwd] =
        laplace_attn::laplace_scan(p.u, p.decay, p.freq, p.c_fwd, p.c_bwd);
    CHECK(y.sizes() == p.u.sizes());
    CHECK(final_fwd.sizes() == at::IntArrayRef({p.B, p.H, p.S, p.D, 2}));
    CHECK(max_rel_error(y, reference(p)) < tol);
  }
}

TEST_CASE("laplace_scan keeps packed sequences apart", "[laplace_scan]") {
  // The problem's two batch rows back to back in one row: each restarts the scan.
  Problem p(at::kDouble);
  const at::Tensor packed = p.u.reshape({1, p.B * p.N, p.H, p.D});
  const at::Tensor cu_seqlens = at::arange(p.B + 1, at::kInt) * static_cast<int32_t>(p.N);
  auto [y, final_fwd, first_bwd] =
      laplace_attn::laplace_scan(packed, p.decay, p.freq, p.c_fwd, p.c_bwd, std::nullopt,
                                 std::nullopt, std::nullopt, cu_seqlens);
  CHECK(final_fwd.sizes() == at::IntArrayRef({p.B, p.H, p.S, p.D, 2}));
  CHECK(max_rel_error(y.reshape(p.u.sizes()), reference(p)) < 1e-10);
}

TEST_CASE("laplace_scan backward through torch::autograd", "[laplace_scan]") {
  Problem p(at::kDouble);
  at::Tensor u = p.u.clone().set_requires_grad(true);
  at::Tensor decay = p.decay.clone().set_requires_grad(true);
  auto [y, final_fwd, first_bwd] = laplace_attn::laplace_scan(u, decay, p.freq, p.c_fwd, p.c_bwd);
  const at::Tensor weights = at::randn_like(y);
  const at::Tensor loss = (y * weights).sum();
  auto grads = torch::autograd::grad({loss}, {u, decay});

  // dL/du is the adjoint: perturbing u along a direction v changes L by <grad, v>.
  const at::Tensor v = at::randn_like(u);
  const double eps = 1e-6;
  auto loss_at = [&](const at::Tensor& uu, const at::Tensor& dd) {
    auto out = laplace_attn::laplace_scan(uu, dd, p.freq, p.c_fwd, p.c_bwd);
    return (std::get<0>(out) * weights).sum().item<double>();
  };
  {
    at::NoGradGuard no_grad;
    const double fd =
        (loss_at(p.u + eps * v, p.decay) - loss_at(p.u - eps * v, p.decay)) / (2 * eps);
    CHECK(std::abs(fd - (grads[0] * v).sum().item<double>()) < 1e-6 * std::max(1.0, std::abs(fd)));
    const at::Tensor w = at::rand_like(p.decay);
    const double fd_decay =
        (loss_at(p.u, p.decay + eps * w) - loss_at(p.u, p.decay - eps * w)) / (2 * eps);
    CHECK(std::abs(fd_decay - (grads[1] * w).sum().item<double>()) <
          1e-6 * std::max(1.0, std::abs(fd_decay)));
  }
}

TEST_CASE("laplace_scan rejects bad inputs with the argument's name", "[laplace_scan]") {
  Problem p(at::kFloat);
  auto message_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const c10::Error& e) {
      return e.what_without_backtrace();
    }
    return "";
  };
  const std::string wrong_rank =
      message_of([&] { laplace_attn::laplace_scan(p.u[0], p.decay, p.freq, p.c_fwd); });
  CHECK(wrong_rank.find("expected u of shape [B, N, H, D]") != std::string::npos);
  const std::string negative =
      message_of([&] { laplace_attn::laplace_scan(p.u, -p.decay - 1, p.freq, p.c_fwd); });
  CHECK(negative.find("expected decay >= 0") != std::string::npos);
}

TEST_CASE("build facts", "[build]") {
  const laplace_attn::BuildInfo info = laplace_attn::build_info();
  CHECK(info.version == "0.1.0");
  CHECK((info.simd == "avx512_bf16" || info.simd == "avx512" || info.simd == "avx2" ||
         info.simd == "baseline"));
  CHECK(info.num_threads >= 1);
}
