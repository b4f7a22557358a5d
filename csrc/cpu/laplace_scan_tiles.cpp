// CPU kernels of laplace_scan for one instruction set (see laplace_scan_tiles.h):
// the forward scans and their transposes (grad_u); the parameter gradients are in
// laplace_scan_grad_tiles.cpp.
//
// Layout of the work. Channels are independent, so a task owns one block of
// channels (one SIMD vector of lanes) of one (batch, head) and runs every node
// over it. Time is cut into tiles of kTileSteps steps: the input and output
// tiles stay in L1 while the nodes pass over them kScanNodeBlock at a time,
// their states held in registers within a tile and carried in memory between
// tiles. Without the tiling, every node block re-reads u and y from memory,
// which is what bounds a naive scan (SPEC 2.1).
#include "cpu/laplace_scan_lanes.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

constexpr int kScanNodeBlock = 4;  // independent recurrences in flight hide the FMA latency

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

template <class T, class A>
LaplaceScanKernels<T, A> kernels_for() {
  return {&num_scan_tasks<T, A>, &forward<T, A>, &adjoint<T, A>, &num_param_tasks<T, A>,
          &param_grads<T, A>};
}

}  // namespace

const LaplaceScanKernelTable& laplace_scan_kernels() {
  static const LaplaceScanKernelTable table = LAPLACE_ATTN_KERNEL_TABLE(kernels_for);
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
