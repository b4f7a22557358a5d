// Packed variable-length batches. Sequences of different lengths travel as one
// row (B = 1), concatenated along the token dimension, with cu_seqlens: int32
// offsets (the PyTorch / flash-attn convention), sequence i being the tokens
// [cu_seqlens[i], cu_seqlens[i + 1]). Every op that takes them checks them here
// and runs its dense kernels once per sequence on views of the packed tensors,
// so no token sees another sequence and nothing is padded.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "ops/internal_api.h"

namespace laplace_attn {

struct PackedSequences {
  std::vector<int64_t> offsets;  // count() + 1 entries, from 0 to the total length

  int64_t count() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t start(int64_t i) const { return offsets[i]; }
  int64_t length(int64_t i) const { return offsets[i + 1] - offsets[i]; }
};

// The shape-only checks (also what a fake kernel can check): `cu_seqlens` is a
// 1-D int32 tensor with at least one entry on the device of `like`, and the
// packed tensor `packed` has batch size 1. Returns the number of sequences.
LAPLACE_ATTN_INTERNAL_API int64_t packed_sequence_count(const char* op, const char* name,
                                                        const at::Tensor& cu_seqlens,
                                                        const char* packed_name,
                                                        const at::Tensor& packed,
                                                        const at::Tensor& like);

// Also checks the values: cu_seqlens[0] = 0, non-decreasing, and the last entry
// equal to `total` (the packed length, `total_name`). Reads the offsets to the
// host (on CUDA a synchronisation).
LAPLACE_ATTN_INTERNAL_API PackedSequences read_packed_sequences(
    const char* op, const char* name, const at::Tensor& cu_seqlens, const char* packed_name,
    const at::Tensor& packed, int64_t total, const char* total_name);

// Rows [i, i + 1) of an optional per-sequence tensor.
inline std::optional<at::Tensor> sequence_row(const std::optional<at::Tensor>& t, int64_t i) {
  if (!t || !t->defined())
    return std::nullopt;
  return t->narrow(0, i, 1);
}

}  // namespace laplace_attn
