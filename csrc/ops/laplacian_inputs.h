// What the drivers of both Laplacian ops (laplacian_kernel, laplacian_attention)
// do to their inputs: the CPU layout's padding and the per-head bandwidth.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/constant_pad_nd.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "cpu/laplacian_layout.h"
#include "ops/value_checks.h"

namespace laplace_attn {

// t with its last dimension zero-padded to a multiple of `multiple`, contiguous.
inline at::Tensor pad_last(const at::Tensor& t, int64_t multiple) {
  const int64_t n = t.size(-1), padded = (n + multiple - 1) / multiple * multiple;
  return (padded == n ? t : at::constant_pad_nd(t, {0, padded - n}, 0.0)).contiguous();
}

// inv_lambda (a scalar or [H]) as a contiguous [H] tensor of the compute type,
// checked to be finite and >= 0, so no kernel value exceeds 1 and none is
// inf * 0 = NaN at zero distance.
inline at::Tensor inv_lambda_per_head(const char* op, const at::Tensor& inv_lambda, int64_t heads,
                                      at::ScalarType compute_type) {
  const at::Tensor lam = inv_lambda.to(compute_type);
  const std::optional<double> bad =
      first_bad_value_on_cpu(lam, [](double x) { return !(x >= 0 && std::isfinite(x)); });
  TORCH_CHECK(!bad, op, ": expected inv_lambda (1 / bandwidth) finite and >= 0, but got ",
              bad.value_or(0.0));
  return lam.expand({heads}).contiguous();
}

}  // namespace laplace_attn
