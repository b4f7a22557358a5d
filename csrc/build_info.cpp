// What this build contains and what it chose on this machine.
#include <ATen/Parallel.h>

#include "cpu/cpu_features.h"
#include "laplace_attn/build_info.h"

namespace laplace_attn {

BuildInfo build_info() {
  BuildInfo info;
  info.version = LAPLACE_ATTN_VERSION;
  info.simd = cpu::selected_simd();
  info.num_threads = at::get_num_threads();
#if defined(_OPENMP)
  info.openmp = true;
#else
  info.openmp = false;
#endif
#if defined(LAPLACE_ATTN_WITH_CUDA)
  info.cuda = true;
#else
  info.cuda = false;
#endif
  return info;
}

void set_cpu_simd(const std::string& level) {
  cpu::select_simd(level);
}

}  // namespace laplace_attn
