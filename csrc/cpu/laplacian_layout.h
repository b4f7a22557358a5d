// The CPU layout of both Laplacian ops' inputs (raw sizes only, no ATen: the
// per-instruction-set kernels include it).
#pragma once

#include <cstdint>

namespace laplace_attn {

// On the CPU, feature dimensions arrive padded with zeros (which change no L1
// distance) to a multiple of kLaplacianPadDim, and the transposed keys' columns to
// a multiple of kLaplacianPadCols, so the kernels see whole vectors. The CUDA
// kernels get the true sizes and no transposed copy.
constexpr int64_t kLaplacianPadDim = 16;
constexpr int64_t kLaplacianPadCols = 32;

// laplacian_attention transposes the keys (a copy of all of them) only for at least
// this many queries per head: a decoding step's one query against a long key cache
// reads each key row once, and the copy would cost more than the step.
constexpr int64_t kLaplacianTransposeMinQueries = 8;

}  // namespace laplace_attn
