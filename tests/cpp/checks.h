// Helpers shared by the C++ tests: error measures, a finite-difference check of
// gradients computed through torch::autograd, and reading an error's message.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace laplace_attn_test {

inline double max_rel_error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = std::max(expected.abs().max().item<double>(), 1e-30);
  return (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>() / scale;
}

// For loss(x) = <f(x), W> with a fixed random W: the largest relative gap, over
// the inputs, between <dloss/dx_i, v> from torch::autograd and the central
// difference (loss(x_i + eps v) - loss(x_i - eps v)) / 2 eps along a random v.
// Inputs must be float64.
inline double gradient_gap(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f,
                           const std::vector<at::Tensor>& inputs, double eps = 1e-6) {
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& x : inputs)
    leaves.push_back(x.detach().clone().set_requires_grad(true));
  const at::Tensor out = f(leaves);
  const at::Tensor weights = at::randn_like(out);
  const std::vector<at::Tensor> grads = torch::autograd::grad({(out * weights).sum()}, leaves);
  double gap = 0;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const at::Tensor v = at::randn_like(inputs[i]);
    auto loss_at = [&](double step) {
      std::vector<at::Tensor> shifted(inputs.begin(), inputs.end());
      shifted[i] = inputs[i] + step * v;
      return (f(shifted) * weights).sum().item<double>();
    };
    const double fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    const double ad = (grads[i] * v).sum().item<double>();
    gap = std::max(gap, std::abs(fd - ad) / std::max(1.0, std::abs(fd)));
  }
  return gap;
}

// The message of the c10::Error that call() throws, or "" if it does not throw.
template <class Call>
std::string message_of(Call&& call) {
  try {
    call();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace laplace_attn_test
