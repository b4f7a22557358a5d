#include "cpu/cpu_features.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace laplace_attn::cpu {
namespace {

const LaplaceScanKernelTable* table_for(const std::string& level) {
#if defined(LAPLACE_ATTN_HAVE_AVX512)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  if (level == "avx512" || (level == "auto" && avx512)) {
    TORCH_CHECK(avx512, "laplace_attn: SIMD level 'avx512' requested, but this CPU lacks AVX-512");
    return &avx512::laplace_scan_kernels();
  }
#endif
#if defined(LAPLACE_ATTN_HAVE_AVX2)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (level == "avx2" || (level == "auto" && avx2)) {
    TORCH_CHECK(avx2, "laplace_attn: SIMD level 'avx2' requested, but this CPU lacks AVX2/FMA");
    return &avx2::laplace_scan_kernels();
  }
#endif
  TORCH_CHECK(level == "auto" || level == "baseline", "laplace_attn: unknown or unavailable SIMD ",
              "level '", level, "'; expected one of auto, avx512, avx2, baseline (as built here)");
  return &baseline::laplace_scan_kernels();
}

std::atomic<const LaplaceScanKernelTable*>& selected() {
  static std::atomic<const LaplaceScanKernelTable*> table{[] {
    const char* env = std::getenv("LAPLACE_ATTN_SIMD");
    return table_for(env && *env ? env : "auto");
  }()};
  return table;
}

}  // namespace

const LaplaceScanKernelTable& laplace_scan_kernels() {
  return *selected().load();
}

template <>
const LaplaceScanKernels<float>& laplace_scan_kernels_for<float>() {
  return laplace_scan_kernels().f32;
}

template <>
const LaplaceScanKernels<double>& laplace_scan_kernels_for<double>() {
  return laplace_scan_kernels().f64;
}

void select_simd(const std::string& level) {
  selected().store(table_for(level));
}

}  // namespace laplace_attn::cpu
