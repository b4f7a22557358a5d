// laplace_transform through the public header: the complex coefficients of every
// node as direct sums written here, causal and bilateral, and their gradients.
#include <ATen/ATen.h>

#include <complex>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

// out[b, n, h, k, p] = sum_{m <= n} a^(n-m) u_m (+ sum_{m > n} a^(m-n) u_m if
// bilateral), a = exp(-decay - i freq), as [..., 2] (real, imaginary).
at::Tensor reference(const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq,
                     bool bilateral) {
  const int64_t B = u.size(0), N = u.size(1), H = u.size(2), P = u.size(3), S = decay.size(1);
  at::Tensor out = at::zeros({B, N, H, S, P, 2}, at::kDouble);
  auto o = out.accessor<double, 6>();
  auto uu = u.accessor<double, 4>();
  auto dd = decay.accessor<double, 2>();
  auto ff = freq.accessor<double, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t k = 0; k < S; ++k)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) {
            std::complex<double> acc = 0;
            for (int64_t m = 0; m < N; ++m) {
              if (m > n && !bilateral)
                continue;
              const double lag = static_cast<double>(std::abs(n - m));
              acc += std::exp(lag * std::complex<double>(-dd[h][k], -ff[h][k])) * uu[b][m][h][p];
            }
            o[b][n][h][k][p][0] = acc.real();
            o[b][n][h][k][p][1] = acc.imag();
          }
  return out;
}

}  // namespace

TEST_CASE("laplace_transform matches direct sums", "[laplace_transform]") {
  at::manual_seed(3);
  const at::Tensor u = at::randn({2, 30, 2, 3}, at::kDouble);
  const at::Tensor decay = at::rand({2, 4}, at::kDouble) * 0.3 + 0.02;
  const at::Tensor freq = at::rand({2, 4}, at::kDouble) * 2 - 1;
  for (bool bilateral : {false, true}) {
    const at::Tensor out = laplace_attn::laplace_transform(u, decay, freq, bilateral);
    CHECK(out.sizes() == at::IntArrayRef({2, 30, 2, 4, 3, 2}));
    CHECK(max_rel_error(out, reference(u, decay, freq, bilateral)) < 1e-12);
    const at::Tensor single = laplace_attn::laplace_transform(
        u.to(at::kFloat), decay.to(at::kFloat), freq.to(at::kFloat), bilateral);
    CHECK(max_rel_error(single, reference(u, decay, freq, bilateral)) < 1e-5);
  }
}

TEST_CASE("laplace_transform backward through torch::autograd", "[laplace_transform]") {
  at::manual_seed(4);
  const at::Tensor u = at::randn({1, 12, 2, 3}, at::kDouble);
  const at::Tensor decay = at::rand({2, 3}, at::kDouble) * 0.3 + 0.05;
  const at::Tensor freq = at::rand({2, 3}, at::kDouble);
  for (bool bilateral : {false, true}) {
    auto f = [&](const std::vector<at::Tensor>& x) {
      return laplace_attn::laplace_transform(x[0], x[1], x[2], bilateral);
    };
    CHECK(gradient_gap(f, {u, decay, freq}) < 1e-6);
  }
}
