// CPU kernels of laplace_scan for one instruction set (see laplace_scan_sweeps.h).
//
// Layout of the work. Channels are independent, so a task owns one block of
// channels (one SIMD vector of lanes) of one (batch, head) and runs every node
// over it. Time is cut into tiles of kTileSteps steps: the input and output
// tiles stay in L1 while the nodes pass over them kNodeBlock at a time, their
// states held in registers within a tile and carried in memory between tiles.
// Without the tiling, every node block re-reads u and y from memory, which is
// what bounds a naive scan (SPEC 2.1).
#include <cstring>
#include <type_traits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "cpu/laplace_scan_tiles.h"
#include "cpu/simd.h"
#include "laplace_scan_math.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

using math::Complex;

template <class T>
using CVec = Complex<Vec<T>>;

constexpr int64_t kTileSteps = 128;  // a u tile and a y tile of one vector per step fit in L1
constexpr int kScanNodeBlock = 4;    // independent recurrences in flight hide the FMA latency
constexpr int kGradNodeBlock = 2;    // the gradient step carries twice the state

// A strided sequence of one channel block ([B, N, H, D] storage: successive
// steps a whole head x channels row apart) in its storage type A, read and
// written in the compute type T. bfloat16/float16 are converted lane by lane in
// registers, so no float32 copy of the sequence exists.
template <class T, class A>
struct SequenceLanes {
  A* base;
  int64_t stride, lanes;

  static constexpr bool kHardwareHalf =
#if defined(__F16C__)
      std::is_same_v<std::remove_const_t<A>, float16_storage> && kLanes<T> % 8 == 0;
#else
      false;
#endif

  Vec<T> load(int64_t t) const {
    const A* src = base + t * stride;
    if constexpr (std::is_same_v<std::remove_const_t<A>, T>) {
      return load_lanes(src, lanes);
    } else {
      Vec<T> v{};
#if defined(__F16C__)
      if constexpr (kHardwareHalf) {
        if (lanes == kLanes<T>) {  // F16C converts eight halves at a time
          for (int64_t l = 0; l < lanes; l += 8) {
            const __m256 f =
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + l)));
            std::memcpy(reinterpret_cast<float*>(&v) + l, &f, sizeof f);
          }
          return v;
        }
      }
#endif
      for (int64_t l = 0; l < lanes; ++l)
        v[l] = to_compute<T>(src[l]);
      return v;
    }
  }
  void store(int64_t t, const Vec<T>& v) const {
    A* dst = base + t * stride;
    if constexpr (std::is_same_v<A, T>) {
      store_lanes(dst, v, lanes);
    } else {
#if defined(__F16C__)
      if constexpr (kHardwareHalf) {
        if (lanes == kLanes<T>) {
          for (int64_t l = 0; l < lanes; l += 8) {
            __m256 f;
            std::memcpy(&f, reinterpret_cast<const float*>(&v) + l, sizeof f);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + l),
                             _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
          }
          return;
        }
      }
#endif
      for (int64_t l = 0; l < lanes; ++l)
        dst[l] = from_compute<A>(v[l]);
    }
  }
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

// ---------------------------------------------------------------------------
// Forward and transposed scans.

struct ForwardStep {
  template <bool kIncludeCurrent, class V, class P>
  static V apply(Complex<V>& state, V x, P ar, P ai, Complex<V> c) {
    return math::scan_step<kIncludeCurrent>(state, x, ar, ai, c);
  }
};

struct AdjointStep {
  template <bool kIncludeCurrent, class V, class P>
  static V apply(Complex<V>& state, V x, P ar, P ai, Complex<V> c) {
    return math::scan_adjoint_step<kIncludeCurrent>(state, x, ar, ai, c);
  }
};

// The nodes of one direction that take part (gate != 0), compacted.
template <class T>
struct ScanWorkspace {
  explicit ScanWorkspace(int64_t nodes)
      : node(nodes),
        ar(nodes),
        ai(nodes),
        coef(nodes),
        state(nodes),
        x(kTileSteps),
        y(kTileSteps) {}
  int64_t count = 0;
  Buffer<int64_t> node;
  Buffer<T> ar, ai;
  Buffer<CVec<T>> coef, state;
  Buffer<Vec<T>> x, y;
};

template <class T, class P>
void gather_nodes(ScanWorkspace<T>& ws, const P& p, const Slice<T>& s, const T* coef,
                  const T* state_in, bool conjugate_state) {
  ws.count = 0;
  for (int64_t k = 0; k < p.nodes; ++k) {
    const T gate = s.gate(p, k);
    if (gate == T(0))
      continue;  // switched-off nodes cost nothing
    const int64_t i = ws.count++;
    ws.node[i] = k;
    ws.ar[i] = p.pole[(s.h * p.nodes + k) * 2];
    ws.ai[i] = p.pole[(s.h * p.nodes + k) * 2 + 1];
    ws.coef[i] = load_complex(coef + s.coef_offset(p, k), s.lanes, gate, false);
    ws.state[i] =
        state_in ? load_complex(state_in + s.state_offset(p, k), s.lanes, T(1), conjugate_state)
                 : CVec<T>{};
  }
}

// Writes the carried states. A switched-off node is frozen: its state passes
// through unchanged (and so does its adjoint).
template <class T, class P>
void scatter_states(const ScanWorkspace<T>& ws, const P& p, const Slice<T>& s, const T* state_in,
                    T* state_out, bool conjugate_state) {
  if (state_out == nullptr)
    return;
  for (int64_t k = 0; k < p.nodes; ++k) {
    T* dst = state_out + s.state_offset(p, k);
    if (state_in) {
      std::memcpy(dst, state_in + s.state_offset(p, k), 2 * s.lanes * sizeof(T));
    } else {
      std::memset(dst, 0, 2 * s.lanes * sizeof(T));
    }
  }
  for (int64_t i = 0; i < ws.count; ++i) {
    store_complex(state_out + s.state_offset(p, ws.node[i]), ws.state[i], s.lanes, conjugate_state);
  }
}

// kNodes nodes over one tile, their states in registers.
template <class T, class Step, bool kForwardInTime, bool kIncludeCurrent, int kNodes>
void sweep_tile(ScanWorkspace<T>& ws, int64_t first, int64_t len) {
  using V = Vec<T>;
  CVec<T> state[kNodes], coef[kNodes];
  T ar[kNodes], ai[kNodes];
  for (int k = 0; k < kNodes; ++k) {
    state[k] = ws.state[first + k];
    coef[k] = ws.coef[first + k];
    ar[k] = ws.ar[first + k];
    ai[k] = ws.ai[first + k];
  }
  const V* __restrict x = ws.x.get();
  V* __restrict y = ws.y.get();
  for (int64_t step = 0; step < len; ++step) {
    const int64_t i = kForwardInTime ? step : len - 1 - step;
    const V xi = x[i];
    V acc = Step::template apply<kIncludeCurrent>(state[0], xi, ar[0], ai[0], coef[0]);
#pragma GCC unroll 8
    for (int k = 1; k < kNodes; ++k) {
      acc += Step::template apply<kIncludeCurrent>(state[k], xi, ar[k], ai[k], coef[k]);
    }
    y[i] += acc;
  }
  for (int k = 0; k < kNodes; ++k)
    ws.state[first + k] = state[k];
}

// One direction over the whole sequence: out (+)= scan of x, for the gathered nodes.
template <class T, class Step, bool kForwardInTime, bool kIncludeCurrent, class In, class Out>
void sweep(ScanWorkspace<T>& ws, const In& x, const Out& out, bool accumulate, int64_t length) {
  const int64_t tiles = ceil_div(length, kTileSteps);
  for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
    const int64_t tile = kForwardInTime ? tile_index : tiles - 1 - tile_index;
    const int64_t t0 = tile * kTileSteps;
    const int64_t len = min_int(kTileSteps, length - t0);
    const int64_t next_t0 = kForwardInTime ? t0 + kTileSteps : t0 - kTileSteps;
    for (int64_t i = 0; i < len; ++i) {
      ws.x[i] = x.load(t0 + i);
      ws.y[i] = accumulate ? out.load(t0 + i) : Vec<T>{};
      x.prefetch(next_t0 + i, length);
      if (accumulate)
        out.prefetch(next_t0 + i, length);
    }
    int64_t first = 0;
    for (; first + kScanNodeBlock <= ws.count; first += kScanNodeBlock) {
      sweep_tile<T, Step, kForwardInTime, kIncludeCurrent, kScanNodeBlock>(ws, first, len);
    }
    switch (ws.count - first) {
      case 3:
        sweep_tile<T, Step, kForwardInTime, kIncludeCurrent, 3>(ws, first, len);
        break;
      case 2:
        sweep_tile<T, Step, kForwardInTime, kIncludeCurrent, 2>(ws, first, len);
        break;
      case 1:
        sweep_tile<T, Step, kForwardInTime, kIncludeCurrent, 1>(ws, first, len);
        break;
      default:
        break;
    }
    for (int64_t i = 0; i < len; ++i)
      out.store(t0 + i, ws.y[i]);
  }
}

// Both directions of a scan (out = causal sweep with c1 + anticausal sweep with
// c2, or the transposed pair), for one task. A 16-bit output holds the first
// direction's sum in a compute-type buffer until the second is added, so it is
// rounded once.
template <class T, class Step, bool kFirstForward, class P, class A, class B>
void both_directions(ScanWorkspace<T>& ws, Buffer<Vec<T>>& partial, const P& p, const Slice<T>& s,
                     const A* in, B* out, const T* c1, const T* state1, T* state1_out, const T* c2,
                     const T* state2, T* state2_out, bool conjugate) {
  const SequenceLanes<T, const A> x = s.sequence(p, in);
  const SequenceLanes<T, B> y = s.sequence(p, out);
  constexpr bool kSecondForward = !kFirstForward;
  gather_nodes(ws, p, s, c1, state1, conjugate);
  if (std::is_same_v<B, T> || !p.bilateral) {
    sweep<T, Step, kFirstForward, true>(ws, x, y, false, p.length);
  } else {
    sweep<T, Step, kFirstForward, true>(ws, x, BufferLanes<T>{partial.get()}, false, p.length);
  }
  scatter_states(ws, p, s, state1, state1_out, conjugate);
  if (!p.bilateral)
    return;
  gather_nodes(ws, p, s, c2, state2, conjugate);
  if constexpr (std::is_same_v<B, T>) {
    sweep<T, Step, kSecondForward, false>(ws, x, y, true, p.length);
  } else {
    const BufferLanes<T> sum{partial.get()};
    sweep<T, Step, kSecondForward, false>(ws, x, sum, true, p.length);
    for (int64_t t = 0; t < p.length; ++t)
      y.store(t, sum.load(t));
  }
  scatter_states(ws, p, s, state2, state2_out, conjugate);
}

// The partial-sum buffer both_directions needs: empty unless the output is 16-bit.
template <class T, class A, class P>
Buffer<Vec<T>> partial_buffer(const P& p) {
  return Buffer<Vec<T>>(std::is_same_v<A, T> || !p.bilateral ? 0 : p.length);
}

template <class T, class A>
int64_t num_scan_tasks(const LaplaceScanParams<T, A>& p) {
  return p.batch * p.heads * ceil_div(p.channels, kLanes<T>);
}

template <class T, class P>
Slice<T> scan_task_slice(const P& p, int64_t task) {
  const int64_t blocks = ceil_div(p.channels, kLanes<T>);
  return Slice<T>(p, task / (p.heads * blocks), (task / blocks) % p.heads, task % blocks);
}

// y = causal scan of u with c_fwd (+ anticausal scan with c_bwd).
template <class T, class A>
void forward(const LaplaceScanParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  ScanWorkspace<T> ws(p.nodes);
  Buffer<Vec<T>> partial = partial_buffer<T, A>(p);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Slice<T> s = scan_task_slice<T>(p, task);
    both_directions<T, ForwardStep, true>(ws, partial, p, s, p.u, p.y, p.c_fwd, p.state_fwd,
                                          p.final_fwd, p.c_bwd, p.state_bwd, p.first_bwd, false);
  }
}

// grad_u = transposed scans of grad_y: each direction runs backwards in time with
// "include current" flipped; state gradients enter and leave conjugated.
template <class T, class A>
void adjoint(const LaplaceScanBackwardParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  ScanWorkspace<T> ws(p.nodes);
  Buffer<Vec<T>> partial = partial_buffer<T, A>(p);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Slice<T> s = scan_task_slice<T>(p, task);
    both_directions<T, AdjointStep, false>(ws, partial, p, s, p.grad_y, p.grad_u, p.c_fwd,
                                           p.grad_final_fwd, p.grad_state_fwd, p.c_bwd,
                                           p.grad_first_bwd, p.grad_state_bwd, true);
  }
}

// ---------------------------------------------------------------------------
// Parameter gradients: a forward pass that carries each state with its
// derivative with respect to the pole and accumulates the sums that dL/dc,
// dL/da and dL/dgate need. Nothing of size N x S is stored.

template <class T>
struct GradWorkspace {
  explicit GradWorkspace(int64_t nodes)
      : node(nodes),
        gate(nodes),
        ar(nodes),
        ai(nodes),
        t(nodes),
        dt(nodes),
        sum_v(nodes),
        sum_dv(nodes),
        x(kTileSteps),
        g(kTileSteps) {}
  int64_t count = 0;
  Buffer<int64_t> node;
  Buffer<T> gate, ar, ai;
  Buffer<CVec<T>> t, dt, sum_v, sum_dv;
  Buffer<Vec<T>> x, g;
};

template <class T, bool kForwardInTime, bool kIncludeCurrent, int kNodes>
void grad_tile(GradWorkspace<T>& ws, int64_t first, int64_t len) {
  using V = Vec<T>;
  CVec<T> t[kNodes], dt[kNodes], sum_v[kNodes], sum_dv[kNodes];
  T ar[kNodes], ai[kNodes];
  for (int k = 0; k < kNodes; ++k) {
    t[k] = ws.t[first + k];
    dt[k] = ws.dt[first + k];
    sum_v[k] = ws.sum_v[first + k];
    sum_dv[k] = ws.sum_dv[first + k];
    ar[k] = ws.ar[first + k];
    ai[k] = ws.ai[first + k];
  }
  const V* __restrict x = ws.x.get();
  const V* __restrict g = ws.g.get();
  for (int64_t step = 0; step < len; ++step) {
    const int64_t i = kForwardInTime ? step : len - 1 - step;
    const V xi = x[i];
    const V gi = g[i];
#pragma GCC unroll 8
    for (int k = 0; k < kNodes; ++k) {
      math::scan_pole_grad_step<kIncludeCurrent>(t[k], dt[k], xi, gi, ar[k], ai[k], sum_v[k],
                                                 sum_dv[k]);
    }
  }
  for (int k = 0; k < kNodes; ++k) {
    ws.t[first + k] = t[k];
    ws.dt[first + k] = dt[k];
    ws.sum_v[first + k] = sum_v[k];
    ws.sum_dv[first + k] = sum_dv[k];
  }
}

// One direction for one batch element and channel block, then folds the sums
// into grad_c, the per-channel pole partials and the per-channel gate partials.
template <class T, bool kForwardInTime, bool kIncludeCurrent, class A>
void grad_direction(GradWorkspace<T>& ws, const LaplaceScanBackwardParams<T, A>& p,
                    const Slice<T>& s, const T* coef, const T* state_in, const T* grad_state_out,
                    T* grad_coef) {
  const bool want_gate = p.grad_gate != nullptr;
  ws.count = 0;
  for (int64_t k = 0; k < p.nodes; ++k) {
    const T gate = s.gate(p, k);
    // A switched-off node only matters through dL/dgate.
    if (gate == T(0) && !want_gate)
      continue;
    const int64_t i = ws.count++;
    ws.node[i] = k;
    ws.gate[i] = gate;
    ws.ar[i] = p.pole[(s.h * p.nodes + k) * 2];
    ws.ai[i] = p.pole[(s.h * p.nodes + k) * 2 + 1];
    ws.t[i] =
        state_in ? load_complex(state_in + s.state_offset(p, k), s.lanes, T(1), false) : CVec<T>{};
    ws.dt[i] = CVec<T>{};
    ws.sum_v[i] = CVec<T>{};
    ws.sum_dv[i] = CVec<T>{};
  }

  const SequenceLanes<T, const A> u = s.sequence(p, p.u);
  const SequenceLanes<T, const A> grad_y = s.sequence(p, p.grad_y);
  const int64_t tiles = ceil_div(p.length, kTileSteps);
  for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
    const int64_t tile = kForwardInTime ? tile_index : tiles - 1 - tile_index;
    const int64_t t0 = tile * kTileSteps;
    const int64_t len = min_int(kTileSteps, p.length - t0);
    const int64_t next_t0 = kForwardInTime ? t0 + kTileSteps : t0 - kTileSteps;
    for (int64_t i = 0; i < len; ++i) {
      ws.x[i] = u.load(t0 + i);
      ws.g[i] = grad_y.load(t0 + i);
      u.prefetch(next_t0 + i, p.length);
      grad_y.prefetch(next_t0 + i, p.length);
    }
    int64_t first = 0;
    for (; first + kGradNodeBlock <= ws.count; first += kGradNodeBlock) {
      grad_tile<T, kForwardInTime, kIncludeCurrent, kGradNodeBlock>(ws, first, len);
    }
    if (first < ws.count)
      grad_tile<T, kForwardInTime, kIncludeCurrent, 1>(ws, first, len);
  }

  for (int64_t i = 0; i < ws.count; ++i) {
    const int64_t k = ws.node[i];
    const T gate = ws.gate[i];
    const CVec<T> c = load_complex(coef + s.coef_offset(p, k), s.lanes, T(1), false);
    const CVec<T>& v = ws.sum_v[i];
    if (want_gate) {
      T* dst = p.partial_gate + ((s.b * p.heads + s.h) * p.nodes + k) * p.channels + s.d0;
      const Vec<T> dgate = c.re * v.re - c.im * v.im;
      for (int64_t l = 0; l < s.lanes; ++l)
        dst[l] += dgate[l];
    }
    if (gate == T(0))
      continue;  // frozen: no dependence on its pole or coefficients
    if (grad_coef) {
      T* dst = grad_coef + s.coef_offset(p, k);
      for (int64_t l = 0; l < s.lanes; ++l) {
        dst[2 * l] += gate * v.re[l];
        dst[2 * l + 1] -= gate * v.im[l];
      }
    }
    if (p.partial_pole) {
      // dL/da = conj(gate * c * sum_dv) + conj(dt_final) * dL/d(state_out)
      const CVec<T>& w = ws.sum_dv[i];
      Vec<T> g_re = gate * (c.re * w.re - c.im * w.im);
      Vec<T> g_im = -gate * (c.re * w.im + c.im * w.re);
      if (grad_state_out) {
        const CVec<T> go =
            load_complex(grad_state_out + s.state_offset(p, k), s.lanes, T(1), false);
        const CVec<T>& dt = ws.dt[i];
        g_re += dt.re * go.re + dt.im * go.im;
        g_im += dt.re * go.im - dt.im * go.re;
      }
      T* dst = p.partial_pole + ((s.h * p.nodes + k) * p.channels + s.d0) * 2;
      for (int64_t l = 0; l < s.lanes; ++l) {
        dst[2 * l] += g_re[l];
        dst[2 * l + 1] += g_im[l];
      }
    }
  }
}

template <class T, class A>
int64_t num_param_tasks(const LaplaceScanParams<T, A>& p) {
  return p.heads * ceil_div(p.channels, kLanes<T>);
}

// Each task owns one (head, channel block) for every batch element, so the sums
// over the batch happen in a fixed order.
template <class T, class A>
void param_grads(const LaplaceScanBackwardParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  GradWorkspace<T> ws(p.nodes);
  const int64_t blocks = ceil_div(p.channels, kLanes<T>);
  for (int64_t task = task_begin; task < task_end; ++task) {
    for (int64_t b = 0; b < p.batch; ++b) {
      const Slice<T> s(p, b, task / blocks, task % blocks);
      grad_direction<T, true, true>(ws, p, s, p.c_fwd, p.state_fwd, p.grad_final_fwd, p.grad_c_fwd);
      if (p.bilateral) {
        grad_direction<T, false, false>(ws, p, s, p.c_bwd, p.state_bwd, p.grad_first_bwd,
                                        p.grad_c_bwd);
      }
    }
  }
}

template <class T, class A>
LaplaceScanKernels<T, A> kernels_for() {
  return {&num_scan_tasks<T, A>, &forward<T, A>, &adjoint<T, A>, &num_param_tasks<T, A>,
          &param_grads<T, A>};
}

}  // namespace

const LaplaceScanKernelTable& laplace_scan_kernels() {
  static const LaplaceScanKernelTable table{
      kernels_for<float, float>(), kernels_for<double, double>(),
      kernels_for<float, bfloat16_storage>(), kernels_for<float, float16_storage>()};
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
