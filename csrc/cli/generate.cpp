#include "cli/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/topk.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "cli/usage_error.h"

namespace laplace_attn::cli {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Logits of the last position, [B, V], of model(tokens, cache).
at::Tensor last_logits(torch::jit::Module& model, const at::Tensor& tokens,
                       const c10::IValue& cache) {
  const c10::IValue out = model.forward({tokens, cache});
  if (!out.isTensor() || out.toTensor().dim() != 3) {
    throw UsageError(std::string("--generate: the model returned a ") + out.tagKind() +
                     "; expected logits [B, N, vocabulary]");
  }
  const at::Tensor logits = out.toTensor();
  return logits.select(1, logits.size(1) - 1);
}

}  // namespace

at::Tensor sample_next(const at::Tensor& logits, double temperature, int64_t top_k,
                       at::Generator& generator) {
  if (temperature == 0.0)
    return logits.argmax(-1);
  at::Tensor scaled = logits.to(at::kFloat) / temperature;
  if (top_k > 0 && top_k < scaled.size(-1)) {
    const at::Tensor kth = std::get<0>(scaled.topk(top_k, -1)).narrow(1, top_k - 1, 1);
    scaled = scaled.masked_fill(scaled < kth, -std::numeric_limits<double>::infinity());
  }
  const at::Tensor probs = at::softmax(scaled, -1);
  return at::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(-1);
}

Generation generate(torch::jit::Module& model, const at::Tensor& prompt,
                    const GenerateOptions& options) {
  if (!model.find_method("new_cache")) {
    throw UsageError(
        "--generate: the model has no new_cache method; it needs a causal language model "
        "with a decoding cache, such as torch.jit.script(laplace_attn.DecoderLM(...))");
  }
  c10::InferenceMode guard;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const int64_t batch = prompt.size(0);
  const c10::IValue cache =
      model.run_method("new_cache", batch, prompt.size(1) + options.new_tokens);

  Generation result;
  std::vector<at::Tensor> pieces{prompt};
  auto start = std::chrono::steady_clock::now();
  at::Tensor logits = last_logits(model, prompt, cache);
  result.prefill_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < options.new_tokens; ++step) {
    const at::Tensor token =
        sample_next(logits, options.temperature, options.top_k, generator).unsqueeze(1);
    pieces.push_back(token);
    if (step + 1 < options.new_tokens)
      logits = last_logits(model, token, cache);
  }
  result.decode_seconds = seconds_since(start);
  result.tokens = at::cat(pieces, 1);
  return result;
}

}  // namespace laplace_attn::cli
