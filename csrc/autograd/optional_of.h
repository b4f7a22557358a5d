// Saved tensors come back undefined where an optional input was None; the
// backward operators take them as optionals again.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace laplace_attn {

inline std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

}  // namespace laplace_attn
