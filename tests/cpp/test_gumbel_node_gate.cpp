// gumbel_node_gate through the public header: binary Concrete gates written
// out here, the straight-through hard gate, and gradients via torch::autograd.
#include <ATen/ATen.h>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

TEST_CASE("gumbel_node_gate forward is the binary Concrete sample", "[gumbel_node_gate]") {
  at::manual_seed(1);
  const at::Tensor logits = at::randn({3, 4, 16}, at::kDouble) * 2;
  const at::Tensor noise = at::rand({3, 4, 16}, at::kDouble);
  const double tau = 0.7;
  const at::Tensor z = (logits + noise.log() - (1 - noise).log()) / tau;

  const at::Tensor soft = laplace_attn::gumbel_node_gate(logits, noise, tau, false, true);
  CHECK(max_rel_error(soft, at::sigmoid(z)) < 1e-12);
  const at::Tensor hard = laplace_attn::gumbel_node_gate(logits, noise, tau, true, true);
  CHECK(at::equal(hard, (z > 0).to(at::kDouble)));
  // Eval: no noise, the gate of the logit alone.
  const at::Tensor eval = laplace_attn::gumbel_node_gate(logits, noise, tau, false, false);
  CHECK(max_rel_error(eval, at::sigmoid(logits / tau)) < 1e-12);
  const at::Tensor eval_hard =
      laplace_attn::gumbel_node_gate(logits, std::nullopt, tau, true, false);
  CHECK(at::equal(eval_hard, (logits > 0).to(at::kDouble)));
}

TEST_CASE("gumbel_node_gate backward: soft gradient, also for the hard gate",
          "[gumbel_node_gate]") {
  at::manual_seed(2);
  const at::Tensor logits = at::randn({2, 8}, at::kDouble);
  const at::Tensor noise = at::rand({2, 8}, at::kDouble);
  auto soft = [&](const std::vector<at::Tensor>& x) {
    return laplace_attn::gumbel_node_gate(x[0], noise, 0.5, false, true);
  };
  CHECK(gradient_gap(soft, {logits}) < 1e-6);

  // Straight through: the hard gate's gradient is the soft gate's.
  const at::Tensor a = logits.clone().set_requires_grad(true);
  const at::Tensor b = logits.clone().set_requires_grad(true);
  const at::Tensor w = at::randn({2, 8}, at::kDouble);
  const auto g_hard = torch::autograd::grad(
      {(laplace_attn::gumbel_node_gate(a, noise, 0.5, true, true) * w).sum()}, {a});
  const auto g_soft = torch::autograd::grad(
      {(laplace_attn::gumbel_node_gate(b, noise, 0.5, false, true) * w).sum()}, {b});
  CHECK(at::allclose(g_hard[0], g_soft[0]));
}

TEST_CASE("gumbel_node_gate rejects bad inputs with the argument's name", "[gumbel_node_gate]") {
  const at::Tensor logits = at::zeros({4});
  CHECK(contains(
      message_of([&] { laplace_attn::gumbel_node_gate(logits, std::nullopt, 0.0, false, true); }),
      "expected tau > 0"));
  CHECK(contains(
      message_of([&] { laplace_attn::gumbel_node_gate(logits, at::zeros({5}), 1.0, false, true); }),
      "expected noise of shape"));
}
