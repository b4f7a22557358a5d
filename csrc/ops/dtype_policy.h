// The precision policy every operator follows (docs/ops.md, "Precision"):
// activations in float32, float64, bfloat16 or float16; parameters and states in
// the activations' dtype or, with bfloat16/float16 activations, in float32;
// compute in float32 (float64 for float64 activations).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common.h"

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

// Calls body(T{}, A{}) with the compute type T and the storage type A of
// activations of dtype `activation`: A = T, or the 16-bit storage types of
// kernels/common.h when the backend reads 16-bit activations in place.
template <bool kNativeActivations, class Body>
void dispatch_activation_types(at::ScalarType activation, Body&& body) {
  if (activation == at::kDouble) {
    body(double{}, double{});
  } else if constexpr (kNativeActivations) {
    if (activation == at::kBFloat16) {
      body(float{}, bfloat16_storage{});
    } else if (activation == at::kHalf) {
      body(float{}, float16_storage{});
    } else {
      body(float{}, float{});
    }
  } else {
    body(float{}, float{});
  }
}

template <class A>
const A* activation_data(const at::Tensor& t) {
  return static_cast<const A*>(t.const_data_ptr());
}

template <class A>
A* mutable_activation_data(const at::Tensor& t) {
  return t.defined() ? static_cast<A*>(t.mutable_data_ptr()) : nullptr;
}

}  // namespace laplace_attn
