// nystrom_attention through the public header: exact when every token is a
// landmark; otherwise the Nystrom formula written here with segment-mean
// landmarks and ATen's pseudo-inverse; gradients via torch::autograd.
#include <ATen/ATen.h>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

at::Tensor row_normalized_kernel(const at::Tensor& x, const at::Tensor& y, double inv_lambda) {
  const at::Tensor kernel = at::exp(-inv_lambda * at::cdist(x, y, /*p=*/1));
  return kernel / kernel.sum(-1, /*keepdim=*/true);
}

// Landmarks are the means of m contiguous segments (N divisible by m here).
at::Tensor nystrom_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             int64_t m, double inv_lambda) {
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2), D = q.size(3);
  const at::Tensor q_land = q.view({B, H, m, N / m, D}).mean(3);
  const at::Tensor k_land = k.view({B, H, m, N / m, D}).mean(3);
  const at::Tensor left = row_normalized_kernel(q, k_land, inv_lambda);
  const at::Tensor middle = row_normalized_kernel(q_land, k_land, inv_lambda);
  const at::Tensor right = row_normalized_kernel(q_land, k, inv_lambda);
  return left.matmul(at::linalg_pinv(middle)).matmul(right.matmul(v));
}

}  // namespace

TEST_CASE("nystrom_attention is exact when every token is a landmark", "[nystrom_attention]") {
  at::manual_seed(12);
  const at::Tensor q = at::randn({2, 2, 16, 8}, at::kDouble);
  const at::Tensor k = at::randn({2, 2, 16, 8}, at::kDouble);
  const at::Tensor v = at::randn({2, 2, 16, 5}, at::kDouble);
  const at::Tensor inv_lambda = at::full({}, 0.3, at::kDouble);
  const at::Tensor out = laplace_attn::nystrom_attention(q, k, v, 16, "laplacian", inv_lambda);
  const at::Tensor exact = row_normalized_kernel(q, k, 0.3).matmul(v);
  CHECK(max_rel_error(out, exact) < 1e-10);
}

TEST_CASE("nystrom_attention matches the Nystrom formula", "[nystrom_attention]") {
  at::manual_seed(13);
  const at::Tensor q = at::randn({1, 2, 48, 8}, at::kDouble) * 0.5;
  const at::Tensor k = at::randn({1, 2, 48, 8}, at::kDouble) * 0.5;
  const at::Tensor v = at::randn({1, 2, 48, 4}, at::kDouble);
  const at::Tensor inv_lambda = at::full({}, 0.3, at::kDouble);
  const at::Tensor out =
      laplace_attn::nystrom_attention(q, k, v, 6, "laplacian", inv_lambda, "row", /*iters=*/40);
  CHECK(max_rel_error(out, nystrom_reference(q, k, v, 6, 0.3)) < 1e-8);
}

TEST_CASE("nystrom_attention backward through torch::autograd", "[nystrom_attention]") {
  at::manual_seed(14);
  const at::Tensor q = at::randn({1, 1, 12, 4}, at::kDouble);
  const at::Tensor k = at::randn({1, 1, 12, 4}, at::kDouble);
  const at::Tensor v = at::randn({1, 1, 12, 3}, at::kDouble);
  const at::Tensor inv_lambda = at::full({}, 0.5, at::kDouble);
  // The backward is that of the exact inverse (not of the unrolled iterations),
  // so iterate to convergence for finite differences to agree.
  auto f = [&](const std::vector<at::Tensor>& x) {
    return laplace_attn::nystrom_attention(x[0], x[1], x[2], 4, "laplacian", x[3], "row", 40);
  };
  CHECK(gradient_gap(f, {q, k, v, inv_lambda}) < 1e-6);
}

TEST_CASE("nystrom_attention rejects bad inputs with the argument's name", "[nystrom_attention]") {
  const at::Tensor x = at::zeros({1, 1, 8, 4});
  CHECK(contains(
      message_of([&] { laplace_attn::nystrom_attention(x, x, x, 4, "cosine", at::ones({})); }),
      "kernel"));
  CHECK(contains(
      message_of([&] { laplace_attn::nystrom_attention(x, x, x, 0, "laplacian", at::ones({})); }),
      "num_landmarks"));
}
