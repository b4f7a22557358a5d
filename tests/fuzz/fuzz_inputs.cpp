// libFuzzer target: laplace-attn-infer's input handling on arbitrary bytes. Every
// input must end in tensors or in a UsageError (what the program prints as one
// line and exit 2); any other exception, a crash, a sanitizer report, a hang or
// an abort is a finding.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cli/inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> bytes(data, data + size);
  try {
    const std::vector<at::Tensor> tensors = laplace_attn::cli::parse_inputs(bytes, "fuzz");
    // What the program does with inputs before a model sees them, and with outputs.
    (void)laplace_attn::cli::describe(tensors);
    (void)laplace_attn::cli::summarize(tensors);
  } catch (const laplace_attn::cli::UsageError&) {
  }
  return 0;
}
