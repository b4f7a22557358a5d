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

}  // namespace laplace_attn
