// Checks of values (not shapes) that never synchronise with a device: on the
// CPU they read the data directly, with no dispatched op (so no
// aten::_local_scalar_dense, which is what .item() runs); on other devices they
// are skipped, since reading device memory from the host would stall the stream
// and forbid CUDA-graph capture. The modules' parameterisation guarantees these
// values; docs/ops.md says which checks run where.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace laplace_attn {

// The first value of `t` (any dtype, any layout) for which `bad` is true, when
// `t` is a CPU tensor; nullopt when none is or `t` is elsewhere.
template <class Bad>
std::optional<double> first_bad_value_on_cpu(const at::Tensor& t, Bad bad) {
  if (!t.is_cpu())
    return std::nullopt;
  const at::Tensor values = t.to(at::kDouble).contiguous();
  const double* data = values.const_data_ptr<double>();
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (bad(data[i]))
      return data[i];
  }
  return std::nullopt;
}

}  // namespace laplace_attn
