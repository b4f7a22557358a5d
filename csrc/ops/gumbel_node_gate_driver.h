// gumbel_node_gate's tensor handling, shared by the CPU and CUDA registrations.
// A Backend supplies forward(GumbelGateParams<T>) and backward(GumbelGateParams<T>).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "gumbel_node_gate_math.h"
#include "ops/gumbel_node_gate.h"

namespace laplace_attn {

template <class T>
GumbelGateParams<T> gumbel_gate_params(const at::Tensor& logits, const at::Tensor& noise,
                                       double tau, bool hard, bool training) {
  GumbelGateParams<T> p;
  p.numel = logits.numel();
  p.logits = logits.const_data_ptr<T>();
  p.use_noise = training && noise.defined();
  p.noise = p.use_noise ? noise.const_data_ptr<T>() : nullptr;
  p.inv_tau = static_cast<T>(1.0 / tau);
  p.hard = hard;
  return p;
}

template <class Backend>
at::Tensor run_gumbel_node_gate(const at::Tensor& logits, const std::optional<at::Tensor>& noise,
                                double tau, bool hard, bool training) {
  check_gumbel_node_gate_inputs("gumbel_node_gate", logits, noise, tau);
  const auto compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x = logits.to(compute).contiguous();
  const at::Tensor u = noise ? noise->to(compute).contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(compute, "gumbel_node_gate", [&] {
    auto p = gumbel_gate_params<scalar_t>(x, u, tau, hard, training);
    p.out = out.mutable_data_ptr<scalar_t>();
    Backend::forward(p);
  });
  return out.to(logits.scalar_type());
}

template <class Backend>
at::Tensor run_gumbel_node_gate_backward(const at::Tensor& grad, const at::Tensor& logits,
                                         const std::optional<at::Tensor>& noise, double tau,
                                         bool training) {
  check_gumbel_node_gate_inputs("_gumbel_node_gate_backward", logits, noise, tau);
  TORCH_CHECK(grad.sizes() == logits.sizes(), "_gumbel_node_gate_backward: expected grad of ",
              "shape ", logits.sizes(), ", but got ", grad.sizes());
  const auto compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x = logits.to(compute).contiguous();
  const at::Tensor u = noise ? noise->to(compute).contiguous() : at::Tensor();
  const at::Tensor g = grad.to(compute).contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(compute, "_gumbel_node_gate_backward", [&] {
    auto p = gumbel_gate_params<scalar_t>(x, u, tau, false, training);
    p.grad = g.const_data_ptr<scalar_t>();
    p.out = out.mutable_data_ptr<scalar_t>();
    Backend::backward(p);
  });
  return out.to(logits.scalar_type());
}

}  // namespace laplace_attn
