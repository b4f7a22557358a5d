// Run-time choice of the instruction set for the CPU kernels.
#pragma once

#include <string>

#include "cpu/laplace_scan_sweeps.h"

namespace laplace_attn::cpu {

// The kernel table in use. The first call picks the widest instruction set the
// CPU supports, unless the environment variable LAPLACE_ATTN_SIMD names one.
const LaplaceScanKernelTable& laplace_scan_kernels();

template <class T>
const LaplaceScanKernels<T>& laplace_scan_kernels_for();

// "auto", "avx512", "avx2" or "baseline"; throws if unavailable here.
void select_simd(const std::string& level);

}  // namespace laplace_attn::cpu
