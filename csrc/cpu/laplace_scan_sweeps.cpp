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

#include "cpu/laplace_scan_sweeps.h"
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

// Successive steps of one channel block are a whole (head x channels) row apart,
// a stride the hardware prefetcher follows poorly across pages; while a tile is
// loaded, ask for the same step of the next tile, which the node blocks give
// ample time to arrive.
template <class T>
void prefetch_step(const T* x, const T* out, bool accumulate, int64_t t, int64_t length,
                   int64_t step_stride) {
  if (t < 0 || t >= length)
    return;
  __builtin_prefetch(x + t * step_stride);
  if (accumulate)
    __builtin_prefetch(out + t * step_stride);
}

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

  Slice(const LaplaceScanParams<T>& p, int64_t b_, int64_t h_, int64_t block)
      : b(b_), h(h_), d0(block * kLanes<T>), lanes(min_int(kLanes<T>, p.channels - d0)) {}

  // Element (b, n = 0, h, d0) of a [B, N, H, D] tensor.
  int64_t sequence_offset(const LaplaceScanParams<T>& p) const {
    return (b * p.length * p.heads + h) * p.channels + d0;
  }
  // Element (b, h, k, d0, 0) of a [B, H, S, D, 2] state tensor.
  int64_t state_offset(const LaplaceScanParams<T>& p, int64_t k) const {
    return (((b * p.heads + h) * p.nodes + k) * p.channels + d0) * 2;
  }
  // Element (h, k, d0, 0) of a [H, S, D, 2] coefficient tensor.
  int64_t coef_offset(const LaplaceScanParams<T>& p, int64_t k) const {
    return ((h * p.nodes + k) * p.channels + d0) * 2;
  }
  T gate(const LaplaceScanParams<T>& p, int64_t k) const {
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

template <class T>
void gather_nodes(ScanWorkspace<T>& ws, const LaplaceScanParams<T>& p, const Slice<T>& s,
                  const T* coef, const T* state_in, bool conjugate_state) {
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
template <class T>
void scatter_states(const ScanWorkspace<T>& ws, const LaplaceScanParams<T>& p, const Slice<T>& s,
                    const T* state_in, T* state_out, bool conjugate_state) {
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
template <class T, class Step, bool kForwardInTime, bool kIncludeCurrent>
void sweep(ScanWorkspace<T>& ws, const T* x, T* out, bool accumulate, int64_t length,
           int64_t step_stride, int64_t lanes) {
  const int64_t tiles = ceil_div(length, kTileSteps);
  for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
    const int64_t tile = kForwardInTime ? tile_index : tiles - 1 - tile_index;
    const int64_t t0 = tile * kTileSteps;
    const int64_t len = min_int(kTileSteps, length - t0);
    const int64_t next_t0 = kForwardInTime ? t0 + kTileSteps : t0 - kTileSteps;
    for (int64_t i = 0; i < len; ++i) {
      ws.x[i] = load_lanes(x + (t0 + i) * step_stride, lanes);
      ws.y[i] = accumulate ? load_lanes(out + (t0 + i) * step_stride, lanes) : Vec<T>{};
      prefetch_step(x, out, accumulate, next_t0 + i, length, step_stride);
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
      store_lanes(out + (t0 + i) * step_stride, ws.y[i], lanes);
  }
}

template <class T>
int64_t num_scan_tasks(const LaplaceScanParams<T>& p) {
  return p.batch * p.heads * ceil_div(p.channels, kLanes<T>);
}

template <class T>
Slice<T> scan_task_slice(const LaplaceScanParams<T>& p, int64_t task) {
  const int64_t blocks = ceil_div(p.channels, kLanes<T>);
  return Slice<T>(p, task / (p.heads * blocks), (task / blocks) % p.heads, task % blocks);
}

// y = causal scan of u with c_fwd (+ anticausal scan with c_bwd).
template <class T>
void forward(const LaplaceScanParams<T>& p, int64_t task_begin, int64_t task_end) {
  ScanWorkspace<T> ws(p.nodes);
  const int64_t step_stride = p.heads * p.channels;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Slice<T> s = scan_task_slice(p, task);
    const int64_t seq = s.sequence_offset(p);
    gather_nodes(ws, p, s, p.c_fwd, p.state_fwd, false);
    sweep<T, ForwardStep, true, true>(ws, p.u + seq, p.y + seq, false, p.length, step_stride,
                                      s.lanes);
    scatter_states(ws, p, s, p.state_fwd, p.final_fwd, false);
    if (!p.bilateral)
      continue;
    gather_nodes(ws, p, s, p.c_bwd, p.state_bwd, false);
    sweep<T, ForwardStep, false, false>(ws, p.u + seq, p.y + seq, true, p.length, step_stride,
                                        s.lanes);
    scatter_states(ws, p, s, p.state_bwd, p.first_bwd, false);
  }
}

// grad_u = transposed scans of grad_y: each direction runs backwards in time with
// "include current" flipped; state gradients enter and leave conjugated.
template <class T>
void adjoint(const LaplaceScanBackwardParams<T>& p, int64_t task_begin, int64_t task_end) {
  ScanWorkspace<T> ws(p.nodes);
  const int64_t step_stride = p.heads * p.channels;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const Slice<T> s = scan_task_slice(p, task);
    const int64_t seq = s.sequence_offset(p);
    gather_nodes(ws, p, s, p.c_fwd, p.grad_final_fwd, true);
    sweep<T, AdjointStep, false, true>(ws, p.grad_y + seq, p.grad_u + seq, false, p.length,
                                       step_stride, s.lanes);
    scatter_states(ws, p, s, p.grad_final_fwd, p.grad_state_fwd, true);
    if (!p.bilateral)
      continue;
    gather_nodes(ws, p, s, p.c_bwd, p.grad_first_bwd, true);
    sweep<T, AdjointStep, true, false>(ws, p.grad_y + seq, p.grad_u + seq, true, p.length,
                                       step_stride, s.lanes);
    scatter_states(ws, p, s, p.grad_first_bwd, p.grad_state_bwd, true);
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
template <class T, bool kForwardInTime, bool kIncludeCurrent>
void grad_direction(GradWorkspace<T>& ws, const LaplaceScanBackwardParams<T>& p, const Slice<T>& s,
                    const T* coef, const T* state_in, const T* grad_state_out, T* grad_coef) {
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

  const int64_t seq = s.sequence_offset(p);
  const int64_t step_stride = p.heads * p.channels;
  const int64_t tiles = ceil_div(p.length, kTileSteps);
  for (int64_t tile_index = 0; tile_index < tiles; ++tile_index) {
    const int64_t tile = kForwardInTime ? tile_index : tiles - 1 - tile_index;
    const int64_t t0 = tile * kTileSteps;
    const int64_t len = min_int(kTileSteps, p.length - t0);
    const int64_t next_t0 = kForwardInTime ? t0 + kTileSteps : t0 - kTileSteps;
    for (int64_t i = 0; i < len; ++i) {
      ws.x[i] = load_lanes(p.u + seq + (t0 + i) * step_stride, s.lanes);
      ws.g[i] = load_lanes(p.grad_y + seq + (t0 + i) * step_stride, s.lanes);
      prefetch_step(p.u + seq, p.grad_y + seq, true, next_t0 + i, p.length, step_stride);
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

template <class T>
int64_t num_param_tasks(const LaplaceScanParams<T>& p) {
  return p.heads * ceil_div(p.channels, kLanes<T>);
}

// Each task owns one (head, channel block) for every batch element, so the sums
// over the batch happen in a fixed order.
template <class T>
void param_grads(const LaplaceScanBackwardParams<T>& p, int64_t task_begin, int64_t task_end) {
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

template <class T>
LaplaceScanKernels<T> kernels_for() {
  return {&num_scan_tasks<T>, &forward<T>, &adjoint<T>, &num_param_tasks<T>, &param_grads<T>};
}

}  // namespace

const LaplaceScanKernelTable& laplace_scan_kernels() {
  static const LaplaceScanKernelTable table{kernels_for<float>(), kernels_for<double>()};
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
