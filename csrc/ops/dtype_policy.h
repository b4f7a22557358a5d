// The precision policy every operator follows (docs/ops.md, "Precision"):
// activations in float32, float64, bfloat16 or float16; parameters and states in
// the activations' dtype or, with bfloat16/float16 activations, in float32;
// compute in float32 (float64 for float64 activations).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace laplace_attn {

inline bool is_low_precision(at::ScalarType t) {
  return t == at::kBFloat16 || t == at::kHalf;
}

inline bool is_activation_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || is_low_precision(t);
}

inline at::ScalarType compute_type_for(at::ScalarType activation) {
  return activation == at::kDouble ? at::kDouble : at::kFloat;
}

// Checks that parameter or state `t` is on the device of `activation` and of a
// dtype the policy allows next to it.
inline void check_param_dtype(const char* op, const char* name, const at::Tensor& t,
                              const at::Tensor& activation, const char* activation_name) {
  TORCH_CHECK(t.device() == activation.device(), op, ": expected ", name, " on ",
              activation.device(), " (the device of ", activation_name, "), but got ", t.device());
  const auto at = activation.scalar_type();
  if (is_low_precision(at)) {
    TORCH_CHECK(t.scalar_type() == at || t.scalar_type() == at::kFloat, op, ": expected ", name,
                " of dtype Float or ", at, " (float32, or the dtype of ", activation_name,
                "), but got ", t.scalar_type());
  } else {
    TORCH_CHECK(t.scalar_type() == at, op, ": expected ", name, " of dtype ", at, " (the dtype of ",
                activation_name, "), but got ", t.scalar_type());
  }
}

}  // namespace laplace_attn
