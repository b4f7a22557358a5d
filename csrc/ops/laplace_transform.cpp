// laplace_transform: the materialised STLT coefficients (SPEC 2.2).
//
// It is laplace_scan with identity readouts: every (head, node, re/im) becomes a
// head of its own with one node, read out through c = 1 (the real part) or
// c = -i (the imaginary part). Autograd, fake tensors and both backends come from
// laplace_scan, so it is registered as a composite.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"

namespace laplace_attn {
namespace {

void check_inputs(const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq,
                  const std::optional<at::Tensor>& state_fwd,
                  const std::optional<at::Tensor>& state_bwd, bool bilateral) {
  constexpr const char* op = "laplace_transform";
  TORCH_CHECK(u.dim() == 4, op, ": expected u of shape [B, N, H, P] (4-D), but got ", u.dim(),
              "-D shape ", u.sizes());
  TORCH_CHECK(decay.dim() == 2 && decay.size(0) == u.size(2), op,
              ": expected decay of shape [H, S] = [", u.size(2), ", S], but got ", decay.sizes());
  TORCH_CHECK(freq.sizes() == decay.sizes(), op, ": expected freq of shape ", decay.sizes(),
              " (the shape of decay), but got ", freq.sizes());
  const std::vector<int64_t> state{u.size(0), u.size(2), decay.size(1), u.size(3), 2};
  for (const auto& [name, t] : {std::pair{"state_fwd", state_fwd}, {"state_bwd", state_bwd}}) {
    if (!t)
      continue;
    TORCH_CHECK(t->sizes() == at::IntArrayRef(state), op, ": expected ", name,
                " of shape [B, H, S, P, 2] = ", at::IntArrayRef(state), ", but got ", t->sizes());
  }
  TORCH_CHECK(bilateral || !state_bwd, op,
              ": state_bwd was given but bilateral=False; the anticausal state only exists "
              "for a bilateral transform");
}

// [B, H, S, P, 2] -> [B, H*S*2, 1, P, 2]: the same state for the re and im heads.
at::Tensor per_pseudo_head(const at::Tensor& state) {
  const int64_t B = state.size(0), H = state.size(1), S = state.size(2), P = state.size(3);
  return state.unsqueeze(3).expand({B, H, S, 2, P, 2}).reshape({B, H * S * 2, 1, P, 2});
}

at::Tensor laplace_transform_composite(const at::Tensor& u, const at::Tensor& decay,
                                       const at::Tensor& freq, bool bilateral,
                                       const std::optional<at::Tensor>& state_fwd,
                                       const std::optional<at::Tensor>& state_bwd) {
  check_inputs(u, decay, freq, state_fwd, state_bwd, bilateral);
  const int64_t B = u.size(0), N = u.size(1), H = u.size(2), P = u.size(3), S = decay.size(1);
  const int64_t heads = H * S * 2;
  const at::Tensor u_heads =
      u.unsqueeze(3).unsqueeze(4).expand({B, N, H, S, 2, P}).reshape({B, N, heads, P});
  const at::Tensor decay_heads = decay.unsqueeze(2).expand({H, S, 2}).reshape({heads, 1});
  const at::Tensor freq_heads = freq.unsqueeze(2).expand({H, S, 2}).reshape({heads, 1});
  // Readouts: Re(1 * z) = Re z and Re(-i * z) = Im z.
  // Built with fills rather than from host data, so fake tensors can trace it.
  at::Tensor readout = at::zeros({2, 2}, u.options());
  readout.select(0, 0).select(0, 0).fill_(1.0);
  readout.select(0, 1).select(0, 1).fill_(-1.0);
  const at::Tensor c =
      readout.view({1, 2, 1, 2}).expand({H * S, 2, P, 2}).reshape({heads, 1, P, 2});
  std::optional<at::Tensor> sf, sb;
  if (state_fwd)
    sf = per_pseudo_head(*state_fwd);
  if (state_bwd)
    sb = per_pseudo_head(*state_bwd);
  const at::Tensor y = std::get<0>(
      laplace_scan(u_heads, decay_heads, freq_heads, c,
                   bilateral ? std::optional<at::Tensor>(c) : std::nullopt, std::nullopt, sf, sb));
  return y.view({B, N, H, S, 2, P}).permute({0, 1, 2, 3, 5, 4}).contiguous();
}

}  // namespace

at::Tensor laplace_transform(const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq,
                             bool bilateral, const std::optional<at::Tensor>& state_fwd,
                             const std::optional<at::Tensor>& state_bwd) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplace_transform", "")
                       .typed<decltype(laplace_transform)>();
  return op.call(u, decay, freq, bilateral, state_fwd, state_bwd);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "laplace_transform(Tensor u, Tensor decay, Tensor freq, bool bilateral=True, "
      "Tensor? state_fwd=None, Tensor? state_bwd=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(laplace_attn, CompositeImplicitAutograd, m) {
  m.impl("laplace_transform", &laplace_transform_composite);
}

}  // namespace laplace_attn
