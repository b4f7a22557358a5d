// laplace_attn: build facts, without any PyTorch header.
#pragma once

#include <string>

#if defined(_WIN32)
#define LAPLACE_ATTN_API __declspec(dllexport)
#else
#define LAPLACE_ATTN_API __attribute__((visibility("default")))
#endif

namespace laplace_attn {

// Facts about this build and the machine it runs on.
struct BuildInfo {
  std::string version;
  std::string simd;  // instruction set of the CPU kernels: avx512_bf16, avx512, avx2 or baseline
  int num_threads;   // threads at::parallel_for may use
  bool openmp;       // built with OpenMP (otherwise at::parallel_for runs serially)
  bool cuda;         // CUDA kernels registered in this build
};
LAPLACE_ATTN_API BuildInfo build_info();

// Chooses the CPU instruction set ("avx512_bf16", "avx512", "avx2", "baseline" or "auto");
// throws if the machine or the build lacks it. For tests and benchmarks.
LAPLACE_ATTN_API void set_cpu_simd(const std::string& level);

}  // namespace laplace_attn
