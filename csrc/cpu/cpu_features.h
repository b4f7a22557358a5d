// Run-time choice of the instruction set for the CPU kernels.
#pragma once

#include <string>
#include <type_traits>

#include "cpu/laplace_scan_tiles.h"
#include "cpu/laplacian_attention_tiles.h"
#include "cpu/laplacian_kernel_tiles.h"

namespace laplace_attn::cpu {

// The instruction set in use: on first use, the widest the CPU supports, unless
// the environment variable LAPLACE_ATTN_SIMD names one.
const char* selected_simd();

// The kernel tables of the instruction set in use.
const LaplaceScanKernelTable& laplace_scan_kernels();
const LaplacianKernelTable& laplacian_kernel_kernels();
const LaplacianAttentionTable& laplacian_attention_kernels();

template <class T, class A = T>
const LaplaceScanKernels<T, A>& laplace_scan_kernels_for() {
  return kernels_of<T, A>(laplace_scan_kernels());
}

template <class T, class A = T>
const LaplacianKernelKernels<T, A>& laplacian_kernel_kernels_for() {
  return kernels_of<T, A>(laplacian_kernel_kernels());
}

template <class T, class A = T>
const LaplacianAttentionKernels<T, A>& laplacian_attention_kernels_for() {
  return kernels_of<T, A>(laplacian_attention_kernels());
}

// "auto", "avx512_bf16", "avx512", "avx2" or "baseline"; throws if unavailable here.
void select_simd(const std::string& level);

}  // namespace laplace_attn::cpu
