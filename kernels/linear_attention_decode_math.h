// One decoding token through one node of laplace_linear_attention, written once
// for every backend: the node's causal state F (Dk x Dv complex) becomes
// a F + k v^T, and the output row gains Re(w q^T F) with the new F. One pass over
// the state, where the chunked algorithm would build chunk tables and GEMMs for a
// single token.
#pragma once

#include <cstdint>

#include "common.h"

namespace laplace_attn {

// state: [Dk, Dv, 2] (re, im interleaved, the operator's state layout), updated
// in place; (ar, ai) the pole, (wr, wi) the readout weight (gate included);
// q, k: [Dk]; v, y: [Dv], y accumulated into.
template <class T>
LAPLACE_ATTN_HD void linear_attention_decode_node(T ar, T ai, T wr, T wi, const T* q, const T* k,
                                                  const T* v, int64_t dk, int64_t dv, T* state,
                                                  T* y) {
  for (int64_t i = 0; i < dk; ++i) {
    const T wq_re = wr * q[i], wq_im = wi * q[i];
    T* row = state + 2 * i * dv;
    for (int64_t j = 0; j < dv; ++j) {
      const T re = ar * row[2 * j] - ai * row[2 * j + 1] + k[i] * v[j];
      const T im = ar * row[2 * j + 1] + ai * row[2 * j];
      row[2 * j] = re;
      row[2 * j + 1] = im;
      y[j] += wq_re * re - wq_im * im;
    }
  }
}

}  // namespace laplace_attn
