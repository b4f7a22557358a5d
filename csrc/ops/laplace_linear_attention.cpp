// laplace_linear_attention: operator schemas, input checks and the C++ entry
// points. The kernels of every device are the chunked algorithm of
// laplace_linear_attention_chunks.cpp, registered here for the CPU and CUDA.
#include "ops/laplace_linear_attention.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

#include "laplace_attn/ops.h"
#include "ops/dtype_policy.h"
#include "ops/shape_checks.h"
#include "ops/value_checks.h"

namespace laplace_attn {
namespace {

constexpr const char* kOp = "laplace_linear_attention";

void check_sequence(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 4, op, ": expected ", name, " of shape [B, N, H, D] (4-D), but got ",
              t.dim(), "-D shape ", t.sizes());
  TORCH_CHECK(is_activation_dtype(t.scalar_type()), op, ": expected ", name,
              " of dtype float32, float64, bfloat16 or float16, but got ", t.scalar_type());
}

void check_decay_values(const at::Tensor& decay) {
  const std::optional<double> negative =
      first_bad_value_on_cpu(decay, [](double d) { return !(d >= 0); });
  TORCH_CHECK(!negative, kOp, ": expected decay >= 0 everywhere (the pole's modulus ",
              "exp(-decay) must not exceed 1), but got ", negative.value_or(0.0));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_kernel(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, bool return_states) {
  check_laplace_linear_attention_inputs(kOp, q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                        state_bwd);
  check_decay_values(decay);
  return laplace_linear_attention_chunked(q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                          state_bwd, return_states);
}

LinearAttentionGrads backward_kernel(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    LinearAttentionGradMask output_mask) {
  const char* op = "_laplace_linear_attention_backward";
  check_laplace_linear_attention_inputs(op, q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                        state_bwd);
  TORCH_CHECK(grad_y.sizes() == v.sizes() && grad_y.device() == v.device(), op,
              ": expected grad_y of the shape and device of v (", v.sizes(), ", ", v.device(),
              "), but got ", grad_y.sizes(), " on ", grad_y.device());
  if (grad_final_fwd)
    check_linear_attention_state(op, "grad_final_fwd", *grad_final_fwd, q, v, decay);
  if (grad_first_bwd)
    check_linear_attention_state(op, "grad_first_bwd", *grad_first_bwd, q, v, decay);
  // Gradients of absent inputs are never computed; unrequested ones are empty.
  LinearAttentionGradMask mask = output_mask;
  mask[kLinGradCBwd] = mask[kLinGradCBwd] && c_bwd.has_value();
  mask[kLinGradGate] = mask[kLinGradGate] && gate.has_value();
  mask[kLinGradStateFwd] = mask[kLinGradStateFwd] && state_fwd.has_value();
  mask[kLinGradStateBwd] = mask[kLinGradStateBwd] && state_bwd.has_value();
  LinearAttentionGrads grads = laplace_linear_attention_backward_chunked(
      grad_y, grad_final_fwd, grad_first_bwd, q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd,
      state_bwd, mask);
  const auto empty_unless = [&](at::Tensor& g, bool wanted) {
    if (!wanted)
      g = at::empty({0}, q.options());
  };
  empty_unless(std::get<0>(grads), mask[kLinGradQ]);
  empty_unless(std::get<1>(grads), mask[kLinGradK]);
  empty_unless(std::get<2>(grads), mask[kLinGradV]);
  empty_unless(std::get<3>(grads), mask[kLinGradDecay]);
  empty_unless(std::get<4>(grads), mask[kLinGradFreq]);
  empty_unless(std::get<5>(grads), mask[kLinGradCFwd]);
  empty_unless(std::get<6>(grads), mask[kLinGradCBwd]);
  empty_unless(std::get<7>(grads), mask[kLinGradGate]);
  empty_unless(std::get<8>(grads), mask[kLinGradStateFwd]);
  empty_unless(std::get<9>(grads), mask[kLinGradStateBwd]);
  return grads;
}

}  // namespace

void check_linear_attention_state(const char* op, const char* name, const at::Tensor& t,
                                  const at::Tensor& q, const at::Tensor& v,
                                  const at::Tensor& decay) {
  check_param_dtype(op, name, t, q, "q");
  check_shape(op, name, t, {q.size(0), q.size(2), decay.size(1), q.size(3), v.size(3), 2},
              "[B, H, S, Dk, Dv, 2]");
}

void check_laplace_linear_attention_inputs(const char* op, const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& decay,
                                           const at::Tensor& freq, const at::Tensor& c_fwd,
                                           const std::optional<at::Tensor>& c_bwd,
                                           const std::optional<at::Tensor>& gate,
                                           const std::optional<at::Tensor>& state_fwd,
                                           const std::optional<at::Tensor>& state_bwd) {
  check_sequence(op, "q", q);
  check_sequence(op, "k", k);
  check_sequence(op, "v", v);
  TORCH_CHECK(k.sizes() == q.sizes(), op, ": expected k of the shape of q (", q.sizes(),
              "), but got ", k.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
              ": expected q, k and v of one dtype, but got ", q.scalar_type(), ", ",
              k.scalar_type(), " and ", v.scalar_type());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), op,
              ": expected q, k and v on one device, but got ", q.device(), ", ", k.device(),
              " and ", v.device());
  TORCH_CHECK(v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2), op,
              ": expected v of shape [B, N, H, Dv] = [", q.size(0), ", ", q.size(1), ", ",
              q.size(2), ", Dv] (B, N, H of q), but got ", v.sizes());
  TORCH_CHECK(decay.dim() == 2, op, ": expected decay of shape [H, S] (2-D), but got ", decay.dim(),
              "-D shape ", decay.sizes());
  const int64_t B = q.size(0), H = q.size(2), S = decay.size(1);
  check_param_dtype(op, "decay", decay, q, "q");
  check_shape(op, "decay", decay, {H, S}, "[H, S]");
  check_param_dtype(op, "freq", freq, q, "q");
  check_shape(op, "freq", freq, {H, S}, "[H, S]");
  check_param_dtype(op, "c_fwd", c_fwd, q, "q");
  check_shape(op, "c_fwd", c_fwd, {H, S, 2}, "[H, S, 2]");
  if (c_bwd) {
    check_param_dtype(op, "c_bwd", *c_bwd, q, "q");
    check_shape(op, "c_bwd", *c_bwd, {H, S, 2}, "[H, S, 2]");
  }
  if (gate) {
    check_param_dtype(op, "gate", *gate, q, "q");
    check_shape(op, "gate", *gate, {B, H, S}, "[B, H, S]");
  }
  if (state_fwd)
    check_linear_attention_state(op, "state_fwd", *state_fwd, q, v, decay);
  if (state_bwd) {
    TORCH_CHECK(c_bwd.has_value(), op,
                ": state_bwd was given but c_bwd is None; the anticausal state only exists for "
                "a bilateral call (pass c_bwd)");
    check_linear_attention_state(op, "state_bwd", *state_bwd, q, v, decay);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_linear_attention(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, bool return_states) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplace_linear_attention", "")
                       .typed<decltype(laplace_linear_attention)>();
  return op.call(q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, return_states);
}

LinearAttentionGrads laplace_linear_attention_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    LinearAttentionGradMask output_mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplace_linear_attention_backward", "")
                       .typed<decltype(laplace_linear_attention_backward)>();
  return op.call(grad_y, grad_final_fwd, grad_first_bwd, q, k, v, decay, freq, c_fwd, c_bwd, gate,
                 state_fwd, state_bwd, output_mask);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "laplace_linear_attention(Tensor q, Tensor k, Tensor v, Tensor decay, Tensor freq, "
      "Tensor c_fwd, Tensor? c_bwd=None, Tensor? gate=None, Tensor? state_fwd=None, "
      "Tensor? state_bwd=None, bool return_states=True) "
      "-> (Tensor y, Tensor final_fwd, Tensor first_bwd)");
  // The backward is an operator of its own so that torch.compile and
  // torch.export see it. Gradients of absent or unrequested inputs are empty.
  m.def(
      "_laplace_linear_attention_backward(Tensor grad_y, Tensor? grad_final_fwd, "
      "Tensor? grad_first_bwd, Tensor q, Tensor k, Tensor v, Tensor decay, Tensor freq, "
      "Tensor c_fwd, Tensor? c_bwd, Tensor? gate, Tensor? state_fwd, Tensor? state_bwd, "
      "bool[10] output_mask) -> (Tensor grad_q, Tensor grad_k, Tensor grad_v, "
      "Tensor grad_decay, Tensor grad_freq, Tensor grad_c_fwd, Tensor grad_c_bwd, "
      "Tensor grad_gate, Tensor grad_state_fwd, Tensor grad_state_bwd)");
}

// One algorithm for every device: its GEMMs run on the device's BLAS.
TORCH_LIBRARY_IMPL(laplace_attn, CPU, m) {
  m.impl("laplace_linear_attention", &forward_kernel);
  m.impl("_laplace_linear_attention_backward", &backward_kernel);
}

TORCH_LIBRARY_IMPL(laplace_attn, CUDA, m) {
  m.impl("laplace_linear_attention", &forward_kernel);
  m.impl("_laplace_linear_attention_backward", &backward_kernel);
}

}  // namespace laplace_attn
