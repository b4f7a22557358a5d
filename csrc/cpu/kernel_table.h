// A CPU op's kernels for every dtype combination of the precision policy
// (ops/dtype_policy.h): Kernels<T, A> with compute type T and storage type A of
// the activations. Each instruction set's build of an op fills one table.
#pragma once

#include <type_traits>

#include "common.h"

namespace laplace_attn::cpu {

template <template <class, class> class Kernels>
struct KernelTable {
  Kernels<float, float> f32;
  Kernels<double, double> f64;
  Kernels<float, bfloat16_storage> bf16;  // bfloat16 activations, float32 compute
  Kernels<float, float16_storage> f16;    // float16 activations, float32 compute
};

// The table whose entries the function template make<T, A>() returns.
#define LAPLACE_ATTN_KERNEL_TABLE(make)                                            \
  {                                                                                \
    make<float, float>(), make<double, double>(), make<float, bfloat16_storage>(), \
        make<float, float16_storage>()                                             \
  }

// The entry of a kernel table for compute type T and storage type A.
template <class T, class A, class Table>
const auto& kernels_of(const Table& table) {
  if constexpr (std::is_same_v<A, bfloat16_storage>) {
    return table.bf16;
  } else if constexpr (std::is_same_v<A, float16_storage>) {
    return table.f16;
  } else if constexpr (sizeof(T) == sizeof(double)) {
    return table.f64;
  } else {
    return table.f32;
  }
}

// What every CPU backend of an op driver declares: the kernels read whole SIMD
// vectors (feature dimensions padded, keys transposed, where an op needs it)
// and read and write 16-bit activations in place.
struct CpuLayout {
  static constexpr bool kPaddedInputs = true;
  static constexpr bool kNativeActivations = true;
};

}  // namespace laplace_attn::cpu
