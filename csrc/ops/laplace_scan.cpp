// laplace_scan: operator schemas, input checks and preparation, and the C++
// entry points.
#include "ops/laplace_scan.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

#include "laplace_attn/ops.h"
#include "ops/dtype_policy.h"
#include "ops/packed_sequences.h"
#include "ops/pole_pairs.h"
#include "ops/shape_checks.h"
#include "ops/value_checks.h"

namespace laplace_attn {
namespace {

// Parameters and states: u's dtype or, next to bfloat16/float16 u, float32.
void check_param_dtype(const char* op, const char* name, const at::Tensor& t, const at::Tensor& u) {
  laplace_attn::check_param_dtype(op, name, t, u, "u");
}

}  // namespace

at::ScalarType laplace_scan_compute_type(const at::Tensor& u) {
  return compute_type_for(u.scalar_type());
}

int64_t laplace_scan_batch(const at::Tensor& u, const std::optional<at::Tensor>& cu_seqlens) {
  return cu_seqlens ? cu_seqlens->size(0) - 1 : u.size(0);
}

void check_state_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& u,
                      const at::Tensor& decay, int64_t batch) {
  check_param_dtype(op, name, t, u);
  check_shape(op, name, t, {batch, u.size(2), decay.size(1), u.size(3), 2}, "[B, H, S, D, 2]");
}

void check_laplace_scan_inputs(const char* op, const at::Tensor& u, const at::Tensor& decay,
                               const at::Tensor& freq, const at::Tensor& c_fwd,
                               const std::optional<at::Tensor>& c_bwd,
                               const std::optional<at::Tensor>& gate,
                               const std::optional<at::Tensor>& state_fwd,
                               const std::optional<at::Tensor>& state_bwd,
                               const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(u.dim() == 4, op, ": expected u of shape [B, N, H, D] (4-D), but got ", u.dim(),
              "-D shape ", u.sizes());
  TORCH_CHECK(is_activation_dtype(u.scalar_type()), op,
              ": expected u of dtype float32, float64, bfloat16 or float16, but got ",
              u.scalar_type());
  TORCH_CHECK(decay.dim() == 2, op, ": expected decay of shape [H, S] (2-D), but got ", decay.dim(),
              "-D shape ", decay.sizes());
  if (cu_seqlens)
    packed_sequence_count(op, "cu_seqlens", *cu_seqlens, "u", u, u);
  // With packed sequences, gates and states are per sequence.
  const int64_t B = laplace_scan_batch(u, cu_seqlens), H = u.size(2), D = u.size(3),
                S = decay.size(1);
  check_param_dtype(op, "decay", decay, u);
  check_shape(op, "decay", decay, {H, S}, "[H, S]");
  check_param_dtype(op, "freq", freq, u);
  check_shape(op, "freq", freq, {H, S}, "[H, S]");
  check_param_dtype(op, "c_fwd", c_fwd, u);
  check_shape(op, "c_fwd", c_fwd, {H, S, D, 2}, "[H, S, D, 2]");
  if (c_bwd) {
    check_param_dtype(op, "c_bwd", *c_bwd, u);
    check_shape(op, "c_bwd", *c_bwd, {H, S, D, 2}, "[H, S, D, 2]");
  }
  if (gate) {
    check_param_dtype(op, "gate", *gate, u);
    check_shape(op, "gate", *gate, {B, H, S}, cu_seqlens ? "[num_sequences, H, S]" : "[B, H, S]");
  }
  if (state_fwd)
    check_state_like(op, "state_fwd", *state_fwd, u, decay, B);
  if (state_bwd) {
    TORCH_CHECK(c_bwd.has_value(), op,
                ": state_bwd was given but c_bwd is None; the anticausal state only exists for "
                "a bilateral scan (pass c_bwd)");
    check_state_like(op, "state_bwd", *state_bwd, u, decay, B);
  }
}

at::Tensor compute_copy(const std::optional<at::Tensor>& t, at::ScalarType compute_type) {
  if (!t || !t->defined())
    return at::Tensor();
  return t->to(compute_type).contiguous();
}

LaplaceScanInputs prepare_laplace_scan_inputs(const at::Tensor& u, const at::Tensor& decay,
                                              const at::Tensor& freq, const at::Tensor& c_fwd,
                                              const std::optional<at::Tensor>& c_bwd,
                                              const std::optional<at::Tensor>& gate,
                                              const std::optional<at::Tensor>& state_fwd,
                                              const std::optional<at::Tensor>& state_bwd,
                                              bool native_activations) {
  LaplaceScanInputs in;
  in.compute_type = laplace_scan_compute_type(u);
  const std::optional<double> negative =
      first_bad_value_on_cpu(decay, [](double d) { return !(d >= 0); });
  TORCH_CHECK(!negative, "laplace_scan: expected decay >= 0 everywhere (the pole's modulus ",
              "exp(-decay) must not exceed 1), but got ", negative.value_or(0.0));
  in.pole = pole_pairs(decay, freq, in.compute_type);
  in.u = (native_activations ? u : u.to(in.compute_type)).contiguous();
  in.c_fwd = c_fwd.to(in.compute_type).contiguous();
  in.c_bwd = compute_copy(c_bwd, in.compute_type);
  in.gate = compute_copy(gate, in.compute_type);
  in.state_fwd = compute_copy(state_fwd, in.compute_type);
  in.state_bwd = compute_copy(state_bwd, in.compute_type);
  return in;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const std::optional<at::Tensor>& cu_seqlens) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::laplace_scan", "")
                       .typed<decltype(laplace_scan)>();
  return op.call(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, cu_seqlens);
}

LaplaceScanGrads laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const std::optional<at::Tensor>& cu_seqlens,
    LaplaceScanGradMask output_mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_laplace_scan_backward", "")
                       .typed<decltype(laplace_scan_backward)>();
  return op.call(grad_y, grad_final_fwd, grad_first_bwd, u, decay, freq, c_fwd, c_bwd, gate,
                 state_fwd, state_bwd, cu_seqlens, output_mask);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "laplace_scan(Tensor u, Tensor decay, Tensor freq, Tensor c_fwd, Tensor? c_bwd=None, "
      "Tensor? gate=None, Tensor? state_fwd=None, Tensor? state_bwd=None, "
      "Tensor? cu_seqlens=None) -> (Tensor y, Tensor final_fwd, Tensor first_bwd)");
  // The backward is an operator of its own so that torch.compile and
  // torch.export see it. Gradients of absent or unrequested inputs are empty.
  m.def(
      "_laplace_scan_backward(Tensor grad_y, Tensor? grad_final_fwd, Tensor? grad_first_bwd, "
      "Tensor u, Tensor decay, Tensor freq, Tensor c_fwd, Tensor? c_bwd, Tensor? gate, "
      "Tensor? state_fwd, Tensor? state_bwd, Tensor? cu_seqlens, bool[8] output_mask) -> (Tensor "
      "grad_u, "
      "Tensor grad_decay, Tensor grad_freq, Tensor grad_c_fwd, Tensor grad_c_bwd, "
      "Tensor grad_gate, Tensor grad_state_fwd, Tensor grad_state_bwd)");
}

}  // namespace laplace_attn
