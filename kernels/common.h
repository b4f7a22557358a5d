// What every kernel shares, CPU and CUDA alike: the host/device qualifier and
// the 16-bit storage types of bfloat16 and float16 activations, with their
// conversions to and from float32 (kernels compute in float32 on 16-bit loads).
// Plain bit manipulation, so the CPU kernels need no ATen and any compiler
// vectorises them.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define LAPLACE_ATTN_HD __host__ __device__ __forceinline__
#else
#define LAPLACE_ATTN_HD inline
#endif

namespace laplace_attn {

// Storage of one bfloat16 / float16 value: layout-compatible with c10::BFloat16
// and c10::Half (one uint16_t), so tensor data is read in place.
struct bfloat16_storage {
  uint16_t bits;
};
struct float16_storage {
  uint16_t bits;
};

// The conversions have internal linkage (an unnamed namespace): the CPU kernels
// are compiled once per instruction set, and a shared out-of-line copy built with
// AVX-512 could be the one the linker keeps for every caller.
namespace {

LAPLACE_ATTN_HD float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

LAPLACE_ATTN_HD uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Values in the compute type T, whatever the storage.
template <class T>
LAPLACE_ATTN_HD T to_compute(T x) {
  return x;
}

template <class T>
LAPLACE_ATTN_HD T to_compute(bfloat16_storage x) {
  return static_cast<T>(bits_to_float(static_cast<uint32_t>(x.bits) << 16));
}

template <class T>
LAPLACE_ATTN_HD T to_compute(float16_storage x) {
  const uint32_t sign = static_cast<uint32_t>(x.bits & 0x8000u) << 16;
  const uint32_t exponent = (x.bits >> 10) & 0x1fu;
  const uint32_t mantissa = x.bits & 0x3ffu;
  float magnitude;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  } else if (exponent == 31) {  // inf or NaN
    magnitude = bits_to_float(0x7f800000u | (mantissa << 13));
  } else {
    magnitude = bits_to_float(((exponent + 112) << 23) | (mantissa << 13));
  }
  return static_cast<T>(bits_to_float(float_to_bits(magnitude) | sign));
}

// Rounding to the storage type, to nearest even (as PyTorch rounds).
LAPLACE_ATTN_HD bfloat16_storage to_bfloat16(float x) {
  const uint32_t bits = float_to_bits(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u)  // NaN stays a (quiet) NaN
    return {static_cast<uint16_t>((bits >> 16) | 0x0040u)};
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return {static_cast<uint16_t>((bits + rounding) >> 16)};
}

LAPLACE_ATTN_HD float16_storage to_float16(float x) {
  const uint32_t bits = float_to_bits(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u)  // NaN
    return {static_cast<uint16_t>(sign | 0x7e00u)};
  if (magnitude >= 0x477ff000u)  // rounds to >= 65520: inf
    return {static_cast<uint16_t>(sign | 0x7c00u)};
  if (magnitude < 0x38800000u) {  // below 2^-14: subnormal or zero, in units of 2^-24
    const float scaled = bits_to_float(magnitude) * 16777216.0f;
    // round to nearest even: adding 1.5 * 2^23 rounds in float arithmetic
    const float rounded = (scaled + 12582912.0f) - 12582912.0f;
    return {static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded))};
  }
  const uint32_t rounding = 0xfffu + ((magnitude >> 13) & 1u);
  const uint32_t rebased = magnitude - (112u << 23) + rounding;
  return {static_cast<uint16_t>(sign | (rebased >> 13))};
}

template <class S, class T>
LAPLACE_ATTN_HD S from_compute(T x) {
  if constexpr (std::is_same_v<S, bfloat16_storage>) {
    return to_bfloat16(static_cast<float>(x));
  } else if constexpr (std::is_same_v<S, float16_storage>) {
    return to_float16(static_cast<float>(x));
  } else {
    return static_cast<S>(x);
  }
}

}  // namespace

namespace math {

// The derivative of |x| (0 at 0), for the L1 distances of both Laplacian ops.
template <class T>
LAPLACE_ATTN_HD T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

}  // namespace math
}  // namespace laplace_attn
