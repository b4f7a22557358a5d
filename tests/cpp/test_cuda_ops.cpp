// Every op on CUDA against the same op on the CPU, forward and backward, when a
// CUDA device is present (what scripts/gpu_check.sh runs under compute-sanitizer
// memcheck and racecheck). Without one, the case only says so.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>

#include <functional>
#include <vector>

#include "catch2_compat.h"
#include "checks.h"
#include "laplace_attn/ops.h"

using namespace laplace_attn_test;

namespace {

using Op = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Largest relative gap between CUDA and CPU of the output and of every input's
// gradient, for loss = <op(inputs), W>.
double cuda_cpu_gap(const Op& op, const std::vector<at::Tensor>& inputs) {
  double gap = 0;
  std::vector<at::Tensor> outputs, weights;
  std::vector<std::vector<at::Tensor>> grads;
  for (const at::Device device : {at::Device(at::kCPU), at::Device(at::kCUDA)}) {
    std::vector<at::Tensor> leaves;
    for (const at::Tensor& x : inputs)
      leaves.push_back(x.to(device).detach().set_requires_grad(x.is_floating_point()));
    const at::Tensor out = op(leaves);
    if (weights.empty())
      weights.push_back(at::randn_like(out));
    std::vector<at::Tensor> differentiable;
    for (const at::Tensor& x : leaves) {
      if (x.requires_grad())
        differentiable.push_back(x);
    }
    grads.push_back(torch::autograd::grad({(out * weights[0].to(device)).sum()}, differentiable));
    outputs.push_back(out.cpu());
  }
  // Not std::max: a NaN gap must survive (std::max(gap, NaN) returns gap).
  gap = max_rel_error(outputs[1], outputs[0]);
  for (size_t i = 0; i < grads[0].size(); ++i) {
    const double e = max_rel_error(grads[1][i].cpu(), grads[0][i]);
    if (!(e <= gap))
      gap = e;
  }
  return gap;
}

}  // namespace

TEST_CASE("every op on CUDA equals the CPU op", "[cuda]") {
  if (!at::hasCUDA()) {
    WARN("no CUDA device: the CUDA ops are checked by the emulation tests only");
    return;
  }
  at::manual_seed(3);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, N = 77, H = 2, S = 3, D = 5;
  const at::Tensor u = at::randn({B, N, H, D}, f64);
  const at::Tensor decay = at::rand({H, S}, f64) * 0.3, freq = at::randn({H, S}, f64);
  const at::Tensor c = at::randn({H, S, D, 2}, f64), gate = at::rand({B, H, S}, f64);
  CHECK(cuda_cpu_gap(
            [](const std::vector<at::Tensor>& x) {
              return std::get<0>(laplace_attn::laplace_scan(x[0], x[1], x[2], x[3], x[4], x[5]));
            },
            {u, decay, freq, c, c * 0.5, gate}) <= 1e-10);
  CHECK(cuda_cpu_gap(
            [](const std::vector<at::Tensor>& x) {
              return laplace_attn::gumbel_node_gate(x[0], x[1], 0.5, false, true);
            },
            {at::randn({B, H, S}, f64), at::rand({B, H, S}, f64)}) <= 1e-12);
  const at::Tensor q = at::randn({B, H, 40, 7}, f64), k = at::randn({B, H, 300, 7}, f64);
  const at::Tensor v = at::randn({B, H, 300, 9}, f64), lam = at::tensor({0.2, 0.5}, f64);
  CHECK(cuda_cpu_gap(
            [](const std::vector<at::Tensor>& x) {
              return laplace_attn::laplacian_kernel(x[0], x[1], x[2]);
            },
            {q, k, lam}) <= 1e-12);
  at::Tensor padded = at::zeros({B, 300}, at::kBool);
  padded.index_put_({1, at::indexing::Slice(200)}, true);
  for (bool causal : {false, true}) {
    CHECK(cuda_cpu_gap(
              [causal](const std::vector<at::Tensor>& x) {
                return laplace_attn::laplacian_attention(x[0], x[1], x[2], x[3], x[4], causal);
              },
              {q, k, v, lam, padded}) <= 1e-12);
  }
}
