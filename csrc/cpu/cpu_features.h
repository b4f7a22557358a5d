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
  if constexpr (std::is_same_v<A, bfloat16_storage>) {
    return laplace_scan_kernels().bf16;
  } else if constexpr (std::is_same_v<A, float16_storage>) {
    return laplace_scan_kernels().f16;
  } else if constexpr (sizeof(T) == sizeof(double)) {
    return laplace_scan_kernels().f64;
  } else {
    return laplace_scan_kernels().f32;
  }
}

template <class T, class A = T>
const LaplacianKernelKernels<T, A>& laplacian_kernel_kernels_for() {
  if constexpr (std::is_same_v<A, bfloat16_storage>) {
    return laplacian_kernel_kernels().bf16;
  } else if constexpr (std::is_same_v<A, float16_storage>) {
    return laplacian_kernel_kernels().f16;
  } else if constexpr (sizeof(T) == sizeof(double)) {
    return laplacian_kernel_kernels().f64;
  } else {
    return laplacian_kernel_kernels().f32;
  }
}

// "auto", "avx512", "avx2" or "baseline"; throws if unavailable here.
void select_simd(const std::string& level);

template <class T, class A = T>
const LaplacianAttentionKernels<T, A>& laplacian_attention_kernels_for() {
  if constexpr (std::is_same_v<A, bfloat16_storage>) {
    return laplacian_attention_kernels().bf16;
  } else if constexpr (std::is_same_v<A, float16_storage>) {
    return laplacian_attention_kernels().f16;
  } else if constexpr (sizeof(T) == sizeof(double)) {
    return laplacian_attention_kernels().f64;
  } else {
    return laplacian_attention_kernels().f32;
  }
}

}  // namespace laplace_attn::cpu
