// The last step of laplace_scan's parameter gradients, shared by every backend:
// fold the per-channel partial sums of one (head, node) in a fixed order, in
// float64, so results do not depend on how the work was split.
#pragma once

#include "laplace_scan_math.h"
#include "laplace_scan_params.h"

namespace laplace_attn::math {

// hk = head * S + node.
template <class T, class A>
LAPLACE_ATTN_HD void reduce_node_param_grads(const LaplaceScanBackwardParams<T, A>& p, int64_t hk) {
  const int64_t HS = p.heads * p.nodes, D = p.channels;
  if (p.partial_pole) {
    double g_re = 0, g_im = 0;
    for (int64_t d = 0; d < D; ++d) {
      g_re += p.partial_pole[(hk * D + d) * 2];
      g_im += p.partial_pole[(hk * D + d) * 2 + 1];
    }
    double grad_decay, grad_freq;
    pole_parameter_grads<double>(p.pole[hk * 2], p.pole[hk * 2 + 1], g_re, g_im, grad_decay,
                                 grad_freq);
    if (p.grad_decay)
      p.grad_decay[hk] = static_cast<T>(grad_decay);
    if (p.grad_freq)
      p.grad_freq[hk] = static_cast<T>(grad_freq);
  }
  if (p.grad_gate) {
    for (int64_t b = 0; b < p.batch; ++b) {
      double sum = 0;
      for (int64_t d = 0; d < D; ++d)
        sum += p.partial_gate[(b * HS + hk) * D + d];
      p.grad_gate[b * HS + hk] = static_cast<T>(sum);
    }
  }
}

}  // namespace laplace_attn::math
