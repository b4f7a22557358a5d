// What the laplace_scan CPU kernels of one instruction set share (the scans in
// laplace_scan_tiles.cpp, the parameter gradients in laplace_scan_grad_tiles.cpp):
// how a task finds its channel block, and sequences read and written in the
// compute type whatever their storage. Included only by those two files, which
// are compiled once per instruction set (LAPLACE_ATTN_ISA).
#pragma once

#include <cstring>
#include <type_traits>

#include "cpu/laplace_scan_tiles.h"
#include "cpu/simd.h"
#include "laplace_scan_math.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {

using math::Complex;

template <class T>
using CVec = Complex<Vec<T>>;

constexpr int64_t kTileSteps = 128;  // a u tile and a y tile of one vector per step fit in L1

// A strided sequence of one channel block ([B, N, H, D] storage: successive
// steps a whole head x channels row apart) in its storage type A, read and
// written in the compute type T. bfloat16/float16 are converted lane by lane in
// registers, so no float32 copy of the sequence exists.
template <class T, class A>
struct SequenceLanes {
  A* base;
  int64_t stride, lanes;

  Vec<T> load(int64_t t) const { return load_as<T>(base + t * stride, lanes); }
  void store(int64_t t, const Vec<T>& v) const { store_as<T>(base + t * stride, v, lanes); }
  // The stride is one the hardware prefetcher follows poorly across pages: while
  // a tile is loaded, the same step of the next tile is asked for.
  void prefetch(int64_t t, int64_t length) const {
    if (t >= 0 && t < length)
      __builtin_prefetch(base + t * stride);
  }
};

// One vector per step in the compute type: where a bilateral scan with a 16-bit
// output keeps its partial sum between the two directions (storing it would
// round it twice).
template <class T>
struct BufferLanes {
  Vec<T>* base;

  Vec<T> load(int64_t t) const { return base[t]; }
  void store(int64_t t, const Vec<T>& v) const { base[t] = v; }
  void prefetch(int64_t, int64_t) const {}
};

// Interleaved (re, im) pairs of `lanes` channels -> one complex lane vector.
template <class T>
CVec<T> load_complex(const T* src, int64_t lanes, T scale, bool conjugate) {
  CVec<T> z{};
  const T im_sign = conjugate ? T(-1) : T(1);
  for (int64_t l = 0; l < lanes; ++l) {
    z.re[l] = scale * src[2 * l];
    z.im[l] = scale * im_sign * src[2 * l + 1];
  }
  return z;
}

template <class T>
void store_complex(T* dst, const CVec<T>& z, int64_t lanes, bool conjugate) {
  const T im_sign = conjugate ? T(-1) : T(1);
  for (int64_t l = 0; l < lanes; ++l) {
    dst[2 * l] = z.re[l];
    dst[2 * l + 1] = im_sign * z.im[l];
  }
}

// Where one task's data lives.
template <class T>
struct Slice {
  int64_t b, h, d0, lanes;

  template <class P>
  Slice(const P& p, int64_t b_, int64_t h_, int64_t block)
      : b(b_), h(h_), d0(block * kLanes<T>), lanes(min_int(kLanes<T>, p.channels - d0)) {}

  // Element (b, n = 0, h, d0) of a [B, N, H, D] tensor.
  template <class P>
  int64_t sequence_offset(const P& p) const {
    return (b * p.length * p.heads + h) * p.channels + d0;
  }
  // One channel block of a [B, N, H, D] sequence of p.
  template <class P, class A>
  SequenceLanes<T, A> sequence(const P& p, A* base) const {
    return {base + sequence_offset(p), p.heads * p.channels, lanes};
  }
  // Element (b, h, k, d0, 0) of a [B, H, S, D, 2] state tensor.
  template <class P>
  int64_t state_offset(const P& p, int64_t k) const {
    return (((b * p.heads + h) * p.nodes + k) * p.channels + d0) * 2;
  }
  // Element (h, k, d0, 0) of a [H, S, D, 2] coefficient tensor.
  template <class P>
  int64_t coef_offset(const P& p, int64_t k) const {
    return ((h * p.nodes + k) * p.channels + d0) * 2;
  }
  template <class P>
  T gate(const P& p, int64_t k) const {
    return p.gate ? p.gate[(b * p.heads + h) * p.nodes + k] : T(1);
  }
};

// The parameter-gradient pass (laplace_scan_grad_tiles.cpp), instantiated there
// for the kernel table's type pairs.
template <class T, class A>
int64_t num_param_tasks(const LaplaceScanParams<T, A>& p);
template <class T, class A>
void param_grads(const LaplaceScanBackwardParams<T, A>& p, int64_t task_begin, int64_t task_end);

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
