// Token-by-token generation from a scripted causal language model with a
// decoding cache (laplace_attn.DecoderLM): the C++ side of laplace_attn.generate.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>

#include <cstdint>

namespace laplace_attn::cli {

struct GenerateOptions {
  int64_t new_tokens = 0;
  double temperature = 1.0;  // 0: always the most likely token
  int64_t top_k = 0;         // 0: sample from every token
  uint64_t seed = 0;
};

struct Generation {
  at::Tensor tokens;  // [B, n + new_tokens] int64: the prompt, then the new tokens
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // all single-token steps together
};

// laplace_attn.sample_next, operation for operation, so that the same seed draws
// the same tokens as Python: logits [B, V] -> tokens [B].
at::Tensor sample_next(const at::Tensor& logits, double temperature, int64_t top_k,
                       at::Generator& generator);

// The prompt [B, n] in one forward call, then one call per new token, through the
// caches of model.new_cache(B, n + new_tokens). Throws UsageError when the model
// has no decoding cache; what the model itself throws passes through.
Generation generate(torch::jit::Module& model, const at::Tensor& prompt,
                    const GenerateOptions& options);

}  // namespace laplace_attn::cli
