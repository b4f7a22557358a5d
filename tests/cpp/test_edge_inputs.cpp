// Inputs at the edges, through the public header: empty sequences and matrices,
// NaN that must stay where it is, non-contiguous views, float masks. The test
// command also runs this file under AddressSanitizer and UBSan, which is where
// out-of-bounds reads on such inputs would show.
#include <ATen/ATen.h>

#include <cmath>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

TEST_CASE("empty sequences give empty outputs", "[edge]") {
  const at::Tensor u = at::randn({2, 0, 3, 4});
  const at::Tensor decay = at::full({3, 5}, 0.1), freq = at::zeros({3, 5});
  const at::Tensor c = at::randn({3, 5, 4, 2});
  const auto [y, final_fwd, first_bwd] = laplace_attn::laplace_scan(u, decay, freq, c, c);
  CHECK(y.sizes() == u.sizes());
  CHECK(final_fwd.abs().max().item<double>() == 0.0);
  CHECK(laplace_attn::laplace_transform(u, decay, freq).size(1) == 0);
  const at::Tensor q = at::randn({2, 3, 0, 4});
  const at::Tensor lam = at::ones({});
  CHECK(laplace_attn::laplacian_kernel(q, q, lam).numel() == 0);
  CHECK(laplace_attn::laplacian_attention(q, q, q, lam).sizes() == q.sizes());
  for (const char* normalization : {"row", "injective"}) {
    CHECK(laplace_attn::nystrom_attention(q, q, q, 4, "laplacian", lam, normalization).sizes() ==
          q.sizes());
  }
  CHECK(laplace_attn::newton_schulz_inverse(at::zeros({3, 0, 0})).sizes() ==
        at::IntArrayRef({3, 0, 0}));
}

TEST_CASE("NaN reaches the outputs it touches and no others", "[edge]") {
  at::manual_seed(3);
  at::Tensor q = at::randn({2, 2, 24, 4}), k = at::randn({2, 2, 24, 4});
  const at::Tensor v = at::randn({2, 2, 24, 4});
  q.index_put_({0, 1, 3, 2}, NAN);
  const at::Tensor lam = at::full({}, 0.5);
  for (const char* kernel : {"laplacian", "softmax"}) {
    const at::Tensor out = laplace_attn::nystrom_attention(q, k, v, 4, kernel, lam);
    CHECK(out[0].isnan().any().item<bool>());
    CHECK(out[1].isfinite().all().item<bool>());
  }
  const at::Tensor exact = laplace_attn::laplacian_attention(q, k, v, lam);
  CHECK(exact[0][1][3].isnan().all().item<bool>());
  CHECK(exact[1].isfinite().all().item<bool>());
  at::Tensor A = at::eye(5).repeat({2, 1, 1});
  A.index_put_({1, 0, 4}, NAN);
  const at::Tensor Z = laplace_attn::newton_schulz_inverse(A, 50);
  CHECK(max_rel_error(Z[0], at::eye(5)) < 1e-6);
  CHECK(Z[1].isnan().all().item<bool>());
}

TEST_CASE("strided views give the results of their contiguous copies", "[edge]") {
  at::manual_seed(4);
  const at::Tensor base = at::randn({2, 12, 3, 8}, at::kDouble);
  const at::Tensor u = base.slice(3, 0, 8, 2);  // every other channel
  const at::Tensor decay = at::full({3, 4}, 0.05, at::kDouble);
  const at::Tensor freq = at::rand({3, 4}, at::kDouble);
  const at::Tensor c = at::randn({3, 4, 4, 2}, at::kDouble);
  const at::Tensor y = std::get<0>(laplace_attn::laplace_scan(u, decay, freq, c, c));
  const at::Tensor y_copy =
      std::get<0>(laplace_attn::laplace_scan(u.contiguous(), decay, freq, c, c));
  CHECK(max_rel_error(y, y_copy) < 1e-14);
  const at::Tensor q = at::randn({2, 3, 9, 5}, at::kDouble)
                           .transpose(2, 3)
                           .contiguous()
                           .transpose(2, 3);  // [B, H, N, D] with N innermost
  const at::Tensor lam = at::full({3}, 0.7, at::kDouble);
  const at::Tensor expanded = at::randn({1, 3, 9, 5}, at::kDouble).expand({2, 3, 9, 5});
  CHECK(max_rel_error(laplace_attn::laplacian_attention(q, expanded, q, lam),
                      laplace_attn::laplacian_attention(q.contiguous(), expanded.contiguous(),
                                                        q.contiguous(), lam)) < 1e-14);
}

TEST_CASE("a float mask is added to the logits", "[edge]") {
  at::manual_seed(5);
  const at::Tensor q = at::randn({2, 2, 7, 3}, at::kDouble),
                   k = at::randn({2, 2, 7, 3}, at::kDouble);
  const at::Tensor v = at::randn({2, 2, 7, 4}, at::kDouble);
  const at::Tensor lam = at::full({}, 0.4, at::kDouble);
  at::Tensor mask = at::randn({2, 7}, at::kDouble);
  mask.index_put_({1, 2}, -INFINITY);
  const at::Tensor scores = -lam * at::cdist(q, k, /*p=*/1) + mask.view({2, 1, 1, 7});
  const at::Tensor expected = at::softmax(scores, -1).matmul(v);
  CHECK(max_rel_error(laplace_attn::laplacian_attention(q, k, v, lam, mask), expected) < 1e-12);
  const at::Tensor pad = at::isinf(mask);
  CHECK(max_rel_error(laplace_attn::laplacian_attention(q, k, v, lam, pad),
                      laplace_attn::laplacian_attention(
                          q, k, v, lam, at::zeros_like(mask).masked_fill(pad, -INFINITY))) < 1e-15);
}
