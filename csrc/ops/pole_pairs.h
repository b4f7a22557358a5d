// The poles of laplace_scan and laplace_linear_attention as the kernels read them.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/stack.h>

namespace laplace_attn {

// a = exp(-decay) * exp(-i freq) as (re, im) pairs [H, S, 2] in dtype, formed once
// in float64 from decay and freq [H, S], never by repeated products.
inline at::Tensor pole_pairs(const at::Tensor& decay, const at::Tensor& freq,
                             at::ScalarType dtype) {
  const at::Tensor radius = at::exp(decay.to(at::kDouble).neg());
  const at::Tensor freq64 = freq.to(at::kDouble);
  return at::stack({radius.mul(at::cos(freq64)), radius.mul(at::sin(freq64)).neg()}, -1)
      .to(dtype)
      .contiguous();
}

}  // namespace laplace_attn
