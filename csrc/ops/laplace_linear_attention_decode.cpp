// laplace_linear_attention for one causal token with a given state (decoding):
// each node's state is advanced and read out in one pass (linear_attention_decode_math.h),
// in the state's own layout, instead of the chunked algorithm's tables and GEMMs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "linear_attention_decode_math.h"
#include "ops/dtype_policy.h"
#include "ops/laplace_linear_attention.h"
#include "ops/pole_pairs.h"

namespace laplace_attn {

bool is_linear_attention_decode_step(const at::Tensor& q, const std::optional<at::Tensor>& c_bwd,
                                     const std::optional<at::Tensor>& state_fwd) {
  return q.size(1) == 1 && !c_bwd && state_fwd && q.device().is_cpu();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention_decode_step(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& gate,
    const at::Tensor& state_fwd, bool return_states) {
  const int64_t B = q.size(0), H = q.size(2), Dk = q.size(3), Dv = v.size(3), S = decay.size(1);
  const at::ScalarType T = compute_type_for(q.scalar_type());
  const auto options = q.options().dtype(T);
  // [B, 1, H, D] is [B*H, D] per token.
  const at::Tensor qh = q.to(T).contiguous(), kh = k.to(T).contiguous(), vh = v.to(T).contiguous();
  const at::Tensor pole = pole_pairs(decay, freq, T);
  at::Tensor weight = c_fwd.to(T).unsqueeze(0).expand({B, H, S, 2});
  if (gate)
    weight = weight * gate->to(T).unsqueeze(-1);
  weight = weight.contiguous();
  at::Tensor state = state_fwd.to(options, /*non_blocking=*/false, /*copy=*/true).contiguous();
  at::Tensor y = at::zeros({B, 1, H, Dv}, options);
  AT_DISPATCH_FLOATING_TYPES(T, "laplace_linear_attention_decode_step", [&] {
    const scalar_t* qp = qh.data_ptr<scalar_t>();
    const scalar_t* kp = kh.data_ptr<scalar_t>();
    const scalar_t* vp = vh.data_ptr<scalar_t>();
    const scalar_t* ap = pole.data_ptr<scalar_t>();
    const scalar_t* wp = weight.data_ptr<scalar_t>();
    scalar_t* sp = state.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    // Heads are independent and each sums its nodes in order: deterministic.
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t h = bh % H;
        for (int64_t s = 0; s < S; ++s) {
          const scalar_t* a = ap + 2 * (h * S + s);
          const scalar_t* w = wp + 2 * (bh * S + s);
          linear_attention_decode_node(a[0], a[1], w[0], w[1], qp + bh * Dk, kp + bh * Dk,
                                       vp + bh * Dv, Dk, Dv, sp + (bh * S + s) * Dk * Dv * 2,
                                       yp + bh * Dv);
        }
      }
    });
  });
  if (!return_states)
    return {y.to(q.scalar_type()), at::empty({0}, options), at::empty({0}, options)};
  return {y.to(q.scalar_type()), state, at::zeros_like(state)};
}

}  // namespace laplace_attn
