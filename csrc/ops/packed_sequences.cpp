#include "ops/packed_sequences.h"

#include <c10/util/Exception.h>

namespace laplace_attn {

int64_t packed_sequence_count(const char* op, const char* name, const at::Tensor& cu_seqlens,
                              const char* packed_name, const at::Tensor& packed,
                              const at::Tensor& like) {
  TORCH_CHECK(cu_seqlens.scalar_type() == at::kInt, op, ": expected ", name,
              " of dtype int32 (offsets of the packed sequences), but got ",
              cu_seqlens.scalar_type());
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.size(0) >= 1, op, ": expected ", name,
              " of shape [num_sequences + 1] (1-D, at least one entry), but got shape ",
              cu_seqlens.sizes());
  TORCH_CHECK(cu_seqlens.device() == like.device(), op, ": expected ", name, " on ", like.device(),
              ", but got ", cu_seqlens.device());
  TORCH_CHECK(packed.size(0) == 1, op, ": with ", name, " the sequences are packed into one row; ",
              "expected ", packed_name, " with batch size 1, but got ", packed.size(0));
  return cu_seqlens.size(0) - 1;
}

PackedSequences read_packed_sequences(const char* op, const char* name,
                                      const at::Tensor& cu_seqlens, const char* packed_name,
                                      const at::Tensor& packed, int64_t total,
                                      const char* total_name) {
  packed_sequence_count(op, name, cu_seqlens, packed_name, packed, packed);
  const at::Tensor host = cu_seqlens.cpu().contiguous();
  const int32_t* values = host.const_data_ptr<int32_t>();
  PackedSequences seqs;
  seqs.offsets.assign(values, values + host.numel());
  TORCH_CHECK(seqs.offsets.front() == 0, op, ": expected ", name, "[0] = 0, but got ",
              seqs.offsets.front());
  for (int64_t i = 1; i < static_cast<int64_t>(seqs.offsets.size()); ++i) {
    TORCH_CHECK(seqs.offsets[i] >= seqs.offsets[i - 1], op, ": expected ", name,
                " non-decreasing, but ", name, "[", i, "] = ", seqs.offsets[i], " < ", name, "[",
                i - 1, "] = ", seqs.offsets[i - 1]);
  }
  TORCH_CHECK(seqs.offsets.back() == total, op, ": expected the last entry of ", name,
              " to be the packed length ", total, " (", total_name, "), but got ",
              seqs.offsets.back());
  return seqs;
}

}  // namespace laplace_attn
