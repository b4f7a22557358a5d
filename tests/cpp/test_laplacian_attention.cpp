// laplacian_attention through the public header: the O(N^2) softmax of
// -||q - k||_1 / lambda written here with ATen, with causal and padding masks,
// and gradients via torch::autograd.
#include <ATen/ATen.h>

#include <cmath>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& inv_lambda, const at::Tensor& padded, bool causal) {
  const int64_t N = q.size(2), M = k.size(2);
  at::Tensor scores = -inv_lambda.view({1, -1, 1, 1}) * at::cdist(q, k, /*p=*/1);
  at::Tensor hidden = padded.view({padded.size(0), 1, 1, M}).expand(scores.sizes());
  if (causal)
    hidden = hidden | at::ones({N, M}, at::kBool).triu(1);
  scores = scores.masked_fill(hidden, -INFINITY);
  // A row with every key hidden is defined as zeros.
  return at::softmax(scores, -1).nan_to_num(0.0).matmul(v);
}

}  // namespace

TEST_CASE("laplacian_attention matches the quadratic formula", "[laplacian_attention]") {
  at::manual_seed(10);
  const int64_t B = 2, H = 2, N = 33, D = 19, E = 7;
  const at::Tensor q = at::randn({B, H, N, D}, at::kDouble);
  const at::Tensor k = at::randn({B, H, N, D}, at::kDouble);
  const at::Tensor v = at::randn({B, H, N, E}, at::kDouble);
  const at::Tensor inv_lambda = at::tensor({0.2, 0.5}, at::kDouble);
  at::Tensor padded = at::zeros({B, N}, at::kBool);
  padded.index_put_({1, at::indexing::Slice(20)}, true);
  const at::Tensor none = at::zeros({B, N}, at::kBool);
  for (bool causal : {false, true}) {
    const at::Tensor out =
        laplace_attn::laplacian_attention(q, k, v, inv_lambda, std::nullopt, causal);
    CHECK(max_rel_error(out, reference(q, k, v, inv_lambda, none, causal)) < 1e-12);
    const at::Tensor masked =
        laplace_attn::laplacian_attention(q, k, v, inv_lambda, padded, causal);
    CHECK(max_rel_error(masked, reference(q, k, v, inv_lambda, padded, causal)) < 1e-12);
  }
  // Far-away queries: every weight underflows, yet the row is a proper average.
  const at::Tensor far = laplace_attn::laplacian_attention(q + 1e4, k, v, inv_lambda);
  CHECK(at::isfinite(far).all().item<bool>());
  CHECK(max_rel_error(far, reference(q + 1e4, k, v, inv_lambda, none, false)) < 1e-9);
}

TEST_CASE("laplacian_attention backward through torch::autograd", "[laplacian_attention]") {
  at::manual_seed(11);
  const at::Tensor q = at::randn({1, 2, 9, 4}, at::kDouble);
  const at::Tensor k = at::randn({1, 2, 11, 4}, at::kDouble);
  const at::Tensor v = at::randn({1, 2, 11, 3}, at::kDouble);
  const at::Tensor inv_lambda = at::tensor({0.4, 0.7}, at::kDouble);
  for (bool causal : {false, true}) {
    auto f = [&](const std::vector<at::Tensor>& x) {
      return laplace_attn::laplacian_attention(x[0], x[1], x[2], x[3], std::nullopt, causal);
    };
    CHECK(gradient_gap(f, {q, k, v, inv_lambda}) < 1e-6);
  }
}
