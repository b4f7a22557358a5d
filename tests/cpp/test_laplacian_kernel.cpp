// laplacian_kernel through the public header: exp(-||x1_i - x2_j||_1 / lambda)
// summed here term by term, and its gradients via torch::autograd.
#include <ATen/ATen.h>

#include <cmath>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

at::Tensor reference(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& inv_lambda) {
  const int64_t B = x1.size(0), H = x1.size(1), N = x1.size(2), M = x2.size(2), D = x1.size(3);
  const at::Tensor lam = inv_lambda.to(at::kDouble).expand({H}).contiguous();
  at::Tensor out = at::empty({B, H, N, M}, at::kDouble);
  auto a = x1.accessor<double, 4>();
  auto b = x2.accessor<double, 4>();
  auto l = lam.accessor<double, 1>();
  auto o = out.accessor<double, 4>();
  for (int64_t bb = 0; bb < B; ++bb)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < M; ++j) {
          double distance = 0;
          for (int64_t d = 0; d < D; ++d)
            distance += std::abs(a[bb][h][i][d] - b[bb][h][j][d]);
          o[bb][h][i][j] = std::exp(-l[h] * distance);
        }
  return out;
}

}  // namespace

TEST_CASE("laplacian_kernel matches the direct formula", "[laplacian_kernel]") {
  at::manual_seed(5);
  // D = 37 and M = 45: not multiples of any vector width or tile.
  const at::Tensor x1 = at::randn({2, 3, 29, 37}, at::kDouble);
  const at::Tensor x2 = at::randn({2, 3, 45, 37}, at::kDouble);
  for (const at::Tensor& inv_lambda :
       {at::full({}, 0.1, at::kDouble), at::tensor({0.05, 0.1, 0.2}, at::kDouble)}) {
    const at::Tensor expected = reference(x1, x2, inv_lambda);
    CHECK(max_rel_error(laplace_attn::laplacian_kernel(x1, x2, inv_lambda), expected) < 1e-12);
    const at::Tensor single = laplace_attn::laplacian_kernel(x1.to(at::kFloat), x2.to(at::kFloat),
                                                             inv_lambda.to(at::kFloat));
    CHECK(max_rel_error(single, expected) < 1e-5);
  }
}

TEST_CASE("laplacian_kernel backward through torch::autograd", "[laplacian_kernel]") {
  at::manual_seed(6);
  const at::Tensor x1 = at::randn({1, 2, 7, 5}, at::kDouble);
  const at::Tensor x2 = at::randn({1, 2, 9, 5}, at::kDouble);
  const at::Tensor inv_lambda = at::tensor({0.3, 0.6}, at::kDouble);
  auto f = [](const std::vector<at::Tensor>& x) {
    return laplace_attn::laplacian_kernel(x[0], x[1], x[2]);
  };
  CHECK(gradient_gap(f, {x1, x2, inv_lambda}) < 1e-6);
}

TEST_CASE("laplacian_kernel rejects bad inputs with the argument's name", "[laplacian_kernel]") {
  const at::Tensor x = at::zeros({1, 2, 3, 4});
  CHECK(contains(message_of([&] { laplace_attn::laplacian_kernel(x[0], x, at::ones({})); }),
                 "expected x1 of shape [B, H, N, D]"));
}
