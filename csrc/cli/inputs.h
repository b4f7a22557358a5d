// Reading and describing laplace-attn-infer's tensors. Kept apart from the
// program so the fuzz target (tests/fuzz/fuzz_inputs.cpp) runs the same code on
// arbitrary bytes.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "cli/usage_error.h"

namespace laplace_attn::cli {

// The tensors in bytes written by torch.save(tensor) or torch.save((tensor, ...))
// (a list works too). Anything else throws UsageError naming `source`.
std::vector<at::Tensor> parse_inputs(const std::vector<char>& bytes, const std::string& source);

// "[2, 40] Long, [3] Float": shapes and dtypes, for messages.
std::string describe(const std::vector<at::Tensor>& tensors);

// A short summary per tensor: shape, dtype, the first values, sum and mean |x|.
// Complex tensors show (re, im) pairs and the complex sum; bool and integer
// tensors are summarised as numbers.
std::string summarize(const std::vector<at::Tensor>& tensors);

}  // namespace laplace_attn::cli
