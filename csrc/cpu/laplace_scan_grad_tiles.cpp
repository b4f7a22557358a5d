// CPU kernels of laplace_scan's parameter gradients for one instruction set: a
// forward pass that carries each state with its derivative with respect to the
// pole and accumulates the sums that dL/dc, dL/da and dL/dgate need. Nothing of
// size N x S is stored. Tiled in time like the scans (laplace_scan_tiles.cpp).
#include "cpu/laplace_scan_lanes.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

constexpr int kGradNodeBlock = 2;  // the gradient step carries twice the state

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

}  // namespace

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

#define LAPLACE_ATTN_INSTANTIATE(T, A)                                    \
  template int64_t num_param_tasks<T, A>(const LaplaceScanParams<T, A>&); \
  template void param_grads<T, A>(const LaplaceScanBackwardParams<T, A>&, int64_t, int64_t);
LAPLACE_ATTN_INSTANTIATE(float, float)
LAPLACE_ATTN_INSTANTIATE(double, double)
LAPLACE_ATTN_INSTANTIATE(float, bfloat16_storage)
LAPLACE_ATTN_INSTANTIATE(float, float16_storage)
#undef LAPLACE_ATTN_INSTANTIATE

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
