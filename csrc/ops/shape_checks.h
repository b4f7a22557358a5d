// The shape check every operator's input validation uses: one message format,
// naming the operator, the argument, its layout and the expected sizes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

namespace laplace_attn {

inline void check_shape(const char* op, const char* name, const at::Tensor& t,
                        const std::vector<int64_t>& expected, const char* layout) {
  TORCH_CHECK(t.sizes() == at::IntArrayRef(expected), op, ": expected ", name, " of shape ", layout,
              " = ", at::IntArrayRef(expected), ", but got ", t.sizes());
}

}  // namespace laplace_attn
