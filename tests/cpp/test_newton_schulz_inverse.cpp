// newton_schulz_inverse through the public header: against ATen's LU inverse
// and pseudo-inverse, and its implicit backward against linalg_inv's gradient.
#include <ATen/ATen.h>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

// Well-conditioned, non-symmetric m x m matrices.
at::Tensor well_conditioned(int64_t batch, int64_t m) {
  return at::eye(m, at::kDouble).expand({batch, m, m}) +
         0.3 * at::randn({batch, m, m}, at::kDouble) / std::sqrt(static_cast<double>(m));
}

}  // namespace

TEST_CASE("newton_schulz_inverse converges to the inverse", "[newton_schulz_inverse]") {
  at::manual_seed(7);
  const at::Tensor A = well_conditioned(3, 24);
  for (int64_t order : {2, 3}) {
    const at::Tensor Z = laplace_attn::newton_schulz_inverse(A, 30, order);
    CHECK(max_rel_error(Z, at::linalg_inv(A)) < 1e-10);
  }
  // Ridge: the inverse of A + ridge * I.
  const at::Tensor Z = laplace_attn::newton_schulz_inverse(A, 30, 3, 0.5);
  CHECK(max_rel_error(Z, at::linalg_inv(A + 0.5 * at::eye(24, at::kDouble))) < 1e-10);
}

TEST_CASE(
    "newton_schulz_inverse of a nearly singular matrix: a few iterations give the "
    "pseudo-inverse",
    "[newton_schulz_inverse]") {
  at::manual_seed(8);
  const at::Tensor U = at::randn({10, 4}, at::kDouble);
  // Rank 4 of 10; each iteration multiplies the null directions by up to 13/4,
  // so many iterations would amplify them (docs/ops.md), a few do not.
  const at::Tensor A = U.matmul(U.t()) + 1e-10 * at::eye(10, at::kDouble);
  const at::Tensor Z = laplace_attn::newton_schulz_inverse(A, 8, 3);
  CHECK(max_rel_error(Z, at::linalg_pinv(A, 1e-6)) < 1e-6);
}

TEST_CASE("newton_schulz_inverse backward: the gradient of the inverse",
          "[newton_schulz_inverse]") {
  at::manual_seed(9);
  const at::Tensor A0 = well_conditioned(2, 8);
  const at::Tensor W = at::randn({2, 8, 8}, at::kDouble);
  const at::Tensor a = A0.clone().set_requires_grad(true);
  const at::Tensor b = A0.clone().set_requires_grad(true);
  const auto ours =
      torch::autograd::grad({(laplace_attn::newton_schulz_inverse(a, 30, 3) * W).sum()}, {a});
  const auto lu = torch::autograd::grad({(at::linalg_inv(b) * W).sum()}, {b});
  CHECK(max_rel_error(ours[0], lu[0]) < 1e-9);
}

TEST_CASE("newton_schulz_inverse rejects bad inputs with the argument's name",
          "[newton_schulz_inverse]") {
  const at::Tensor A = at::eye(3);
  CHECK(contains(message_of([&] {
                   laplace_attn::newton_schulz_inverse(at::zeros({3, 4}));
                 }),
                 "expected A of shape"));
  CHECK(contains(message_of([&] { laplace_attn::newton_schulz_inverse(A, 6, 4); }),
                 "expected order 2 or 3"));
}
