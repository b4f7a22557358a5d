#include "cpu/cpu_features.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace laplace_attn::cpu {
namespace {

enum class Isa { baseline, avx2, avx512, avx512_bf16 };

Isa isa_for(const std::string& level) {
#if defined(LAPLACE_ATTN_HAVE_AVX512)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("f16c");
  const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  if (level == "avx512_bf16" || (level == "auto" && bf16)) {
    TORCH_CHECK(bf16,
                "laplace_attn: SIMD level 'avx512_bf16' requested, but this CPU lacks "
                "AVX-512 BF16");
    return Isa::avx512_bf16;
  }
  if (level == "avx512" || (level == "auto" && avx512)) {
    TORCH_CHECK(avx512, "laplace_attn: SIMD level 'avx512' requested, but this CPU lacks AVX-512");
    return Isa::avx512;
  }
#endif
#if defined(LAPLACE_ATTN_HAVE_AVX2)
  // F16C (float16 conversions) came with every AVX2 CPU; checked all the same.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (level == "avx2" || (level == "auto" && avx2)) {
    TORCH_CHECK(avx2,
                "laplace_attn: SIMD level 'avx2' requested, but this CPU lacks AVX2/FMA/F16C");
    return Isa::avx2;
  }
#endif
  TORCH_CHECK(level == "auto" || level == "baseline", "laplace_attn: unknown or unavailable SIMD ",
              "level '", level,
              "'; expected one of auto, avx512_bf16, avx512, avx2, baseline (as built here)");
  return Isa::baseline;
}

std::atomic<Isa>& selected() {
  static std::atomic<Isa> isa{[] {
    const char* env = std::getenv("LAPLACE_ATTN_SIMD");
    return isa_for(env && *env ? env : "auto");
  }()};
  return isa;
}

}  // namespace

// The table `getter` of the selected instruction set's namespace.
#if defined(LAPLACE_ATTN_HAVE_AVX512)
#define LAPLACE_ATTN_TABLE(getter)  \
  switch (selected().load()) {      \
    case Isa::avx512_bf16:          \
      return avx512_bf16::getter(); \
    case Isa::avx512:               \
      return avx512::getter();      \
    case Isa::avx2:                 \
      return avx2::getter();        \
    default:                        \
      return baseline::getter();    \
  }
#else
#define LAPLACE_ATTN_TABLE(getter) return baseline::getter();
#endif

const char* selected_simd() {
  switch (selected().load()) {
    case Isa::avx512_bf16:
      return "avx512_bf16";
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

const LaplaceScanKernelTable& laplace_scan_kernels() {
  LAPLACE_ATTN_TABLE(laplace_scan_kernels)
}

const LaplacianKernelTable& laplacian_kernel_kernels() {
  LAPLACE_ATTN_TABLE(laplacian_kernel_kernels)
}

const LaplacianAttentionTable& laplacian_attention_kernels() {
  LAPLACE_ATTN_TABLE(laplacian_attention_kernels)
}

#undef LAPLACE_ATTN_TABLE

void select_simd(const std::string& level) {
  selected().store(isa_for(level));
}

}  // namespace laplace_attn::cpu
