// Autocast for every operator, on the CPU and CUDA autocast keys. The policy
// (docs/ops.md, "Precision"): activations run in the autocast dtype; parameters,
// states and the landmark inverse in float32; float64 calls are left as they
// are. The kernels then accept the mixed dtypes natively. nystrom_attention is a
// composite: its parts are autocast one by one.
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "laplace_attn/ops.h"

namespace laplace_attn {
namespace {

template <c10::DeviceType device>
struct Autocast {
  // Below autocast for the rest of the call; the casts happen before.
  c10::impl::ExcludeDispatchKeyGuard below{c10::autocast_dispatch_keyset};

  static at::ScalarType dtype() { return at::autocast::get_autocast_dtype(device); }
  template <class T>
  static auto activation(const T& t) {
    return at::autocast::cached_cast(dtype(), t, device);
  }
  template <class T>
  static auto fp32(const T& t) {
    return at::autocast::cached_cast(at::kFloat, t, device);
  }
};

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan_autocast(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const std::optional<at::Tensor>& cu_seqlens) {
  using A = Autocast<device>;
  A below;
  if (u.scalar_type() == at::kDouble)
    return laplace_scan(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, cu_seqlens);
  return laplace_scan(A::activation(u), A::fp32(decay), A::fp32(freq), A::fp32(c_fwd),
                      A::fp32(c_bwd), A::fp32(gate), A::fp32(state_fwd), A::fp32(state_bwd),
                      cu_seqlens);
}

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention_autocast(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, bool return_states) {
  using A = Autocast<device>;
  A below;
  if (q.scalar_type() == at::kDouble)
    return laplace_linear_attention(q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd,
                                    return_states);
  return laplace_linear_attention(A::activation(q), A::activation(k), A::activation(v),
                                  A::fp32(decay), A::fp32(freq), A::fp32(c_fwd), A::fp32(c_bwd),
                                  A::fp32(gate), A::fp32(state_fwd), A::fp32(state_bwd),
                                  return_states);
}

template <c10::DeviceType device>
at::Tensor laplace_transform_autocast(const at::Tensor& u, const at::Tensor& decay,
                                      const at::Tensor& freq, bool bilateral,
                                      const std::optional<at::Tensor>& state_fwd,
                                      const std::optional<at::Tensor>& state_bwd) {
  using A = Autocast<device>;
  A below;
  if (u.scalar_type() == at::kDouble)
    return laplace_transform(u, decay, freq, bilateral, state_fwd, state_bwd);
  return laplace_transform(A::activation(u), A::fp32(decay), A::fp32(freq), bilateral,
                           A::fp32(state_fwd), A::fp32(state_bwd));
}

template <c10::DeviceType device>
at::Tensor gumbel_node_gate_autocast(const at::Tensor& logits,
                                     const std::optional<at::Tensor>& noise, double tau, bool hard,
                                     bool training) {
  using A = Autocast<device>;
  A below;
  return gumbel_node_gate(A::fp32(logits), A::fp32(noise), tau, hard, training);
}

template <c10::DeviceType device>
at::Tensor laplacian_kernel_autocast(const at::Tensor& x1, const at::Tensor& x2,
                                     const at::Tensor& inv_lambda) {
  using A = Autocast<device>;
  A below;
  if (x1.scalar_type() == at::kDouble)
    return laplacian_kernel(x1, x2, inv_lambda);
  return laplacian_kernel(A::activation(x1), A::activation(x2), A::fp32(inv_lambda));
}

template <c10::DeviceType device>
at::Tensor newton_schulz_inverse_autocast(const at::Tensor& A_in, int64_t iters, int64_t order,
                                          double ridge) {
  using A = Autocast<device>;
  A below;
  return newton_schulz_inverse(A::fp32(A_in), iters, order, ridge);
}

template <c10::DeviceType device>
at::Tensor laplacian_attention_autocast(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& inv_lambda,
                                        const std::optional<at::Tensor>& key_padding_mask,
                                        bool causal, const std::optional<at::Tensor>& cu_seqlens,
                                        const std::optional<at::Tensor>& cu_seqlens_k) {
  using A = Autocast<device>;
  A below;
  if (q.scalar_type() == at::kDouble)
    return laplacian_attention(q, k, v, inv_lambda, key_padding_mask, causal, cu_seqlens,
                               cu_seqlens_k);
  return laplacian_attention(A::activation(q), A::activation(k), A::activation(v),
                             A::fp32(inv_lambda), A::fp32(key_padding_mask), causal, cu_seqlens,
                             cu_seqlens_k);
}

template <c10::DeviceType device>
void register_autocast(torch::Library& m) {
  m.impl("laplace_scan", &laplace_scan_autocast<device>);
  m.impl("laplace_linear_attention", &laplace_linear_attention_autocast<device>);
  m.impl("laplace_transform", &laplace_transform_autocast<device>);
  m.impl("gumbel_node_gate", &gumbel_node_gate_autocast<device>);
  m.impl("laplacian_kernel", &laplacian_kernel_autocast<device>);
  m.impl("newton_schulz_inverse", &newton_schulz_inverse_autocast<device>);
  m.impl("laplacian_attention", &laplacian_attention_autocast<device>);
}

}  // namespace

TORCH_LIBRARY_IMPL(laplace_attn, AutocastCPU, m) {
  register_autocast<c10::DeviceType::CPU>(m);
}

TORCH_LIBRARY_IMPL(laplace_attn, AutocastCUDA, m) {
  register_autocast<c10::DeviceType::CUDA>(m);
}

}  // namespace laplace_attn
