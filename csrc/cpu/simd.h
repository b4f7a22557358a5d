// Lane vectors and buffers for the CPU kernels that are compiled once per
// instruction set (see CMakeLists.txt). Everything here lives in the ISA's own
// namespace with internal linkage.
//
// Files that include this header include neither ATen nor the standard
// containers: inline functions from shared headers compiled with AVX-512 enabled
// could otherwise be picked by the linker for the whole library and fault on
// older CPUs.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common.h"

#if !defined(LAPLACE_ATTN_ISA) || !defined(LAPLACE_ATTN_VECTOR_BYTES)
#error "build this file with LAPLACE_ATTN_ISA and LAPLACE_ATTN_VECTOR_BYTES defined"
#endif

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

// One SIMD register of T, as a GCC vector type (lane-wise operators, any width).
template <class T>
struct LaneVector;
template <>
struct LaneVector<float> {
  typedef float type __attribute__((vector_size(LAPLACE_ATTN_VECTOR_BYTES)));
};
template <>
struct LaneVector<double> {
  typedef double type __attribute__((vector_size(LAPLACE_ATTN_VECTOR_BYTES)));
};
template <class T>
using Vec = typename LaneVector<T>::type;
// Number of T in one vector.
template <class T>
constexpr int64_t kLanes = LAPLACE_ATTN_VECTOR_BYTES / sizeof(T);

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t min_int(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// A 64-byte aligned heap array.
template <class E>
class Buffer {
 public:
  explicit Buffer(int64_t n) {
    const size_t bytes = ((static_cast<size_t>(n) * sizeof(E) + 63) / 64 + 1) * 64;
    data_ = static_cast<E*>(std::aligned_alloc(64, bytes));
    if (data_ == nullptr)
      throw std::bad_alloc();
  }
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  E& operator[](int64_t i) { return data_[i]; }
  const E& operator[](int64_t i) const { return data_[i]; }
  E* get() { return data_; }

 private:
  E* data_;
};

template <class T>
Vec<T> load_lanes(const T* src, int64_t lanes) {
  Vec<T> v{};
  if (lanes == kLanes<T>) {
    std::memcpy(&v, src, sizeof(v));
  } else {
    std::memcpy(&v, src, lanes * sizeof(T));
  }
  return v;
}

template <class T>
void store_lanes(T* dst, const Vec<T>& v, int64_t lanes) {
  if (lanes == kLanes<T>) {
    std::memcpy(dst, &v, sizeof(v));
  } else {
    std::memcpy(dst, &v, lanes * sizeof(T));
  }
}

// `lanes` values of storage type A (T, or a 16-bit storage of kernels/common.h)
// as a vector of T, converted in registers: float16 by the hardware (F16C,
// AVX-512F) where the level has it, bfloat16 by a shift.
template <class T, class A>
Vec<T> load_as(const A* src, int64_t lanes) {
  if constexpr (std::is_same_v<A, T>) {
    return load_lanes(src, lanes);
  } else {
    Vec<T> v{};
    // One conversion per register: assembling a vector from halves through
    // memory stalls store forwarding.
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<A, float16_storage> && kLanes<T> == 16) {
      if (lanes == kLanes<T>) {
        const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
        std::memcpy(&v, &f, sizeof v);
        return v;
      }
    }
#endif
#if defined(__F16C__)
    if constexpr (std::is_same_v<A, float16_storage> && kLanes<T> == 8) {
      if (lanes == kLanes<T>) {
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
        std::memcpy(&v, &f, sizeof v);
        return v;
      }
    }
#endif
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<A, bfloat16_storage> && kLanes<T> == 16) {
      if (lanes == kLanes<T>) {  // bfloat16 is the top half of a float32
        const __m512i bits = _mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))), 16);
        std::memcpy(&v, &bits, sizeof v);
        return v;
      }
    }
#endif
#if defined(__AVX2__)
    if constexpr (std::is_same_v<A, bfloat16_storage> && kLanes<T> == 8) {
      if (lanes == kLanes<T>) {
        const __m256i bits = _mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))), 16);
        std::memcpy(&v, &bits, sizeof v);
        return v;
      }
    }
#endif
    for (int64_t l = 0; l < lanes; ++l)
      v[l] = to_compute<T>(src[l]);
    return v;
  }
}

// The first `lanes` values of v into storage type A, rounded to nearest even.
template <class T, class A>
void store_as(A* dst, const Vec<T>& v, int64_t lanes) {
  if constexpr (std::is_same_v<A, T>) {
    store_lanes(dst, v, lanes);
  } else {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<A, float16_storage> && kLanes<T> == 16) {
      if (lanes == kLanes<T>) {
        __m512 f;
        std::memcpy(&f, &v, sizeof f);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                            _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
        return;
      }
    }
#endif
#if defined(__F16C__)
    if constexpr (std::is_same_v<A, float16_storage> && kLanes<T> == 8) {
      if (lanes == kLanes<T>) {
        __m256 f;
        std::memcpy(&f, &v, sizeof f);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                         _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
        return;
      }
    }
#endif
#if defined(__AVX512BF16__)
    // One instruction rounds 16 floats to bfloat16 (to nearest even; float32
    // subnormals, below 1.2e-38, become zero).
    if constexpr (std::is_same_v<A, bfloat16_storage> && kLanes<T> == 16) {
      if (lanes == kLanes<T>) {
        __m512 f;
        std::memcpy(&f, &v, sizeof f);
        const __m256bh rounded = _mm512_cvtneps_pbh(f);
        std::memcpy(dst, &rounded, sizeof rounded);
        return;
      }
    }
#endif
    for (int64_t l = 0; l < lanes; ++l)
      dst[l] = from_compute<A>(v[l]);
  }
}

template <class T>
Vec<T> abs_lanes(Vec<T> v) {
  const Vec<T> neg = -v;
  return v < 0 ? neg : v;
}

// sign(v) lane by lane (0 for 0, so ties get no gradient, like torch.sign).
template <class T>
Vec<T> sign_lanes(Vec<T> v) {
  const Vec<T> zero{};
  const Vec<T> one = zero + T(1);
  return v > 0 ? one : (v < 0 ? -one : zero);
}

template <class T>
T sum_lanes(Vec<T> v) {
  T s = 0;
  for (int64_t l = 0; l < kLanes<T>; ++l)
    s += v[l];
  return s;
}

// libm by its C names: an inline std::exp compiled here with wide instructions
// must not become the copy the rest of the library links to.
inline float exp_scalar(float x) {
  return __builtin_expf(x);
}
inline double exp_scalar(double x) {
  return __builtin_exp(x);
}
inline float log_scalar(float x) {
  return __builtin_logf(x);
}
inline double log_scalar(double x) {
  return __builtin_log(x);
}

}  // namespace
}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
