// laplace_scan's tensor handling, shared by the CPU and CUDA registrations:
// validation, dtype conversion, allocation of outputs and gradients. A Backend
// supplies two kernels on raw pointers, for a compute type T and a storage type
// A of the sequences, and says whether it reads 16-bit activations in place:
//   static constexpr bool kNativeActivations;
//   static void forward(const LaplaceScanParams<T, A>&);
//   static void backward(const LaplaceScanBackwardParams<T, A>&);  // the non-null gradients
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "ops/laplace_scan.h"
#include "ops/packed_sequences.h"

namespace laplace_attn {

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_packed_laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const at::Tensor& cu_seqlens);

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const std::optional<at::Tensor>& cu_seqlens) {
  check_laplace_scan_inputs("laplace_scan", u, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                            state_bwd, cu_seqlens);
  if (cu_seqlens) {
    return run_packed_laplace_scan<Backend>(u, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                            state_bwd, *cu_seqlens);
  }
  const LaplaceScanInputs in = prepare_laplace_scan_inputs(
      u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, Backend::kNativeActivations);
  const auto opts = in.pole.options();  // the compute type
  const int64_t B = u.size(0), H = u.size(2), D = u.size(3), S = decay.size(1);
  at::Tensor y = at::empty(in.u.sizes(), in.u.options());
  at::Tensor final_fwd = at::empty({B, H, S, D, 2}, opts);
  at::Tensor first_bwd =
      in.c_bwd.defined() ? at::empty({B, H, S, D, 2}, opts) : at::zeros({B, H, S, D, 2}, opts);

  dispatch_activation_types<Backend::kNativeActivations>(u.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    LaplaceScanParams<T, A> p;
    fill_laplace_scan_params(p, in);
    p.y = mutable_activation_data<A>(y);
    p.final_fwd = final_fwd.mutable_data_ptr<T>();
    p.first_bwd = p.bilateral ? first_bwd.mutable_data_ptr<T>() : nullptr;
    Backend::forward(p);
  });
  // y in the activations' dtype; the states stay in the compute type, so chunked
  // runs do not round them at every chunk boundary.
  return {y.to(u.scalar_type()), final_fwd, first_bwd};
}

template <class Backend>
LaplaceScanGrads run_packed_laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const at::Tensor& cu_seqlens,
    LaplaceScanGradMask output_mask);

template <class Backend>
LaplaceScanGrads run_laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const std::optional<at::Tensor>& cu_seqlens,
    LaplaceScanGradMask output_mask) {
  constexpr const char* op = "_laplace_scan_backward";
  check_laplace_scan_inputs(op, u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd,
                            cu_seqlens);
  TORCH_CHECK(grad_y.sizes() == u.sizes(), op, ": expected grad_y of shape ", u.sizes(),
              " (the shape of u), but got ", grad_y.sizes());
  const int64_t batch = laplace_scan_batch(u, cu_seqlens);
  if (grad_final_fwd)
    check_state_like(op, "grad_final_fwd", *grad_final_fwd, u, decay, batch);
  if (grad_first_bwd)
    check_state_like(op, "grad_first_bwd", *grad_first_bwd, u, decay, batch);
  if (cu_seqlens) {
    return run_packed_laplace_scan_backward<Backend>(grad_y, grad_final_fwd, grad_first_bwd, u,
                                                     decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                                     state_bwd, *cu_seqlens, output_mask);
  }

  const LaplaceScanInputs in = prepare_laplace_scan_inputs(
      u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, Backend::kNativeActivations);
  // grad_y in the storage of u (y's dtype, which is what autograd passes).
  const at::Tensor gy = grad_y.to(in.u.scalar_type()).contiguous();
  const at::Tensor g_final = compute_copy(grad_final_fwd, in.compute_type);
  const at::Tensor g_first =
      in.c_bwd.defined() ? compute_copy(grad_first_bwd, in.compute_type) : at::Tensor();
  const auto opts = in.pole.options();
  const int64_t B = u.size(0), H = u.size(2), D = u.size(3), S = decay.size(1);
  auto wanted = [&](LaplaceScanGrad which, const at::Tensor& input) {
    return output_mask[which] && input.defined();
  };
  const bool want_u = output_mask[kGradU];
  const bool want_state_fwd = wanted(kGradStateFwd, in.state_fwd);
  const bool want_state_bwd = wanted(kGradStateBwd, in.state_bwd);
  const bool want_pole = output_mask[kGradDecay] || output_mask[kGradFreq];
  const bool want_c_fwd = output_mask[kGradCFwd];
  const bool want_c_bwd = wanted(kGradCBwd, in.c_bwd);
  const bool want_gate = wanted(kGradGate, in.gate);

  const bool run_adjoint = want_u || want_state_fwd || want_state_bwd;
  const bool run_params = want_pole || want_c_fwd || want_c_bwd || want_gate;
  at::Tensor grad_u = run_adjoint ? at::empty(in.u.sizes(), in.u.options()) : at::Tensor();
  at::Tensor grad_state_fwd = want_state_fwd ? at::empty({B, H, S, D, 2}, opts) : at::Tensor();
  at::Tensor grad_state_bwd = want_state_bwd ? at::empty({B, H, S, D, 2}, opts) : at::Tensor();
  at::Tensor grad_c_fwd = want_c_fwd ? at::zeros({H, S, D, 2}, opts) : at::Tensor();
  at::Tensor grad_c_bwd = want_c_bwd ? at::zeros({H, S, D, 2}, opts) : at::Tensor();
  at::Tensor grad_decay = want_pole ? at::empty({H, S}, opts) : at::Tensor();
  at::Tensor grad_freq = want_pole ? at::empty({H, S}, opts) : at::Tensor();
  at::Tensor grad_gate = want_gate ? at::empty({B, H, S}, opts) : at::Tensor();
  at::Tensor partial_pole = want_pole ? at::zeros({H, S, D, 2}, opts) : at::Tensor();
  at::Tensor partial_gate = want_gate ? at::zeros({B, H, S, D}, opts) : at::Tensor();

  dispatch_activation_types<Backend::kNativeActivations>(u.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    using scalar_t = T;
    LaplaceScanBackwardParams<T, A> p;
    fill_laplace_scan_params(p, in);
    p.grad_y = activation_data<A>(gy);
    p.grad_final_fwd = data_or_null<scalar_t>(g_final);
    p.grad_first_bwd = data_or_null<scalar_t>(g_first);
    p.grad_u = mutable_activation_data<A>(grad_u);
    p.grad_state_fwd = mutable_data_or_null<scalar_t>(grad_state_fwd);
    p.grad_state_bwd = mutable_data_or_null<scalar_t>(grad_state_bwd);
    p.grad_c_fwd = mutable_data_or_null<scalar_t>(grad_c_fwd);
    p.grad_c_bwd = mutable_data_or_null<scalar_t>(grad_c_bwd);
    p.grad_decay = mutable_data_or_null<scalar_t>(grad_decay);
    p.grad_freq = mutable_data_or_null<scalar_t>(grad_freq);
    p.grad_gate = mutable_data_or_null<scalar_t>(grad_gate);
    p.partial_pole = mutable_data_or_null<scalar_t>(partial_pole);
    p.partial_gate = mutable_data_or_null<scalar_t>(partial_gate);
    if (run_adjoint || run_params)
      Backend::backward(p);
  });

  // Each gradient in the dtype of its input.
  auto result = [&](const at::Tensor& g, bool want, const std::optional<at::Tensor>& input) {
    return want ? g.to(input->scalar_type()) : at::empty({0}, u.options());
  };
  return {result(grad_u, want_u, u),
          result(grad_decay, output_mask[kGradDecay], decay),
          result(grad_freq, output_mask[kGradFreq], freq),
          result(grad_c_fwd, want_c_fwd, c_fwd),
          result(grad_c_bwd, want_c_bwd, c_bwd),
          result(grad_gate, want_gate, gate),
          result(grad_state_fwd, want_state_fwd, state_fwd),
          result(grad_state_bwd, want_state_bwd, state_bwd)};
}

// A packed batch runs sequence by sequence on views of the packed tensors: u's
// rows of one sequence are contiguous, so the kernels read them in place.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_packed_laplace_scan(
    const at::Tensor& u, const at::Tensor& decay, const at::Tensor& freq, const at::Tensor& c_fwd,
    const std::optional<at::Tensor>& c_bwd, const std::optional<at::Tensor>& gate,
    const std::optional<at::Tensor>& state_fwd, const std::optional<at::Tensor>& state_bwd,
    const at::Tensor& cu_seqlens) {
  const PackedSequences seqs = read_packed_sequences("laplace_scan", "cu_seqlens", cu_seqlens, "u",
                                                     u, u.size(1), "u.size(1)");
  const auto opts = u.options().dtype(laplace_scan_compute_type(u));
  const int64_t H = u.size(2), D = u.size(3), S = decay.size(1);
  at::Tensor y = at::empty(u.sizes(), u.options());
  at::Tensor final_fwd = at::empty({seqs.count(), H, S, D, 2}, opts);
  at::Tensor first_bwd = at::zeros({seqs.count(), H, S, D, 2}, opts);
  for (int64_t i = 0; i < seqs.count(); ++i) {
    auto [y_i, final_i, first_i] =
        run_laplace_scan<Backend>(u.narrow(1, seqs.start(i), seqs.length(i)), decay, freq, c_fwd,
                                  c_bwd, sequence_row(gate, i), sequence_row(state_fwd, i),
                                  sequence_row(state_bwd, i), std::nullopt);
    y.narrow(1, seqs.start(i), seqs.length(i)).copy_(y_i);
    final_fwd.narrow(0, i, 1).copy_(final_i);
    first_bwd.narrow(0, i, 1).copy_(first_i);
  }
  return {y, final_fwd, first_bwd};
}

// The per-sequence gradients of the shared parameters are summed in sequence
// order, in the compute type, so the result does not depend on threads.
template <class Backend>
LaplaceScanGrads run_packed_laplace_scan_backward(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_fwd,
    const std::optional<at::Tensor>& grad_first_bwd, const at::Tensor& u, const at::Tensor& decay,
    const at::Tensor& freq, const at::Tensor& c_fwd, const std::optional<at::Tensor>& c_bwd,
    const std::optional<at::Tensor>& gate, const std::optional<at::Tensor>& state_fwd,
    const std::optional<at::Tensor>& state_bwd, const at::Tensor& cu_seqlens,
    LaplaceScanGradMask output_mask) {
  const PackedSequences seqs = read_packed_sequences("_laplace_scan_backward", "cu_seqlens",
                                                     cu_seqlens, "u", u, u.size(1), "u.size(1)");
  const at::ScalarType compute = laplace_scan_compute_type(u);
  // Per-token and per-sequence gradients are written into slices; the shared
  // parameters' are accumulated.
  const std::optional<at::Tensor> inputs[kNumLaplaceScanGrads] = {
      u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd};
  const bool per_sequence[kNumLaplaceScanGrads] = {false, false, false, false,
                                                   false, true,  true,  true};
  std::array<at::Tensor, kNumLaplaceScanGrads> total;
  for (int i = 0; i < kNumLaplaceScanGrads; ++i) {
    if (!output_mask[i] || !inputs[i] || !inputs[i]->defined())
      continue;
    const bool shared = i != kGradU && !per_sequence[i];
    total[i] = shared ? at::zeros(inputs[i]->sizes(), inputs[i]->options().dtype(compute))
                      : at::empty(inputs[i]->sizes(), inputs[i]->options());
  }
  for (int64_t s = 0; s < seqs.count(); ++s) {
    const int64_t start = seqs.start(s), length = seqs.length(s);
    const LaplaceScanGrads g = run_laplace_scan_backward<Backend>(
        grad_y.narrow(1, start, length), sequence_row(grad_final_fwd, s),
        sequence_row(grad_first_bwd, s), u.narrow(1, start, length), decay, freq, c_fwd, c_bwd,
        sequence_row(gate, s), sequence_row(state_fwd, s), sequence_row(state_bwd, s), std::nullopt,
        output_mask);
    const at::Tensor parts[kNumLaplaceScanGrads] = {std::get<0>(g), std::get<1>(g), std::get<2>(g),
                                                    std::get<3>(g), std::get<4>(g), std::get<5>(g),
                                                    std::get<6>(g), std::get<7>(g)};
    for (int i = 0; i < kNumLaplaceScanGrads; ++i) {
      if (!total[i].defined())
        continue;
      if (i == kGradU)
        total[i].narrow(1, start, length).copy_(parts[i]);
      else if (per_sequence[i])
        total[i].narrow(0, s, 1).copy_(parts[i]);
      else
        total[i].add_(parts[i]);
    }
  }
  auto result = [&](int i) {
    return total[i].defined() ? total[i].to(inputs[i]->scalar_type()) : at::empty({0}, u.options());
  };
  return {result(0), result(1), result(2), result(3), result(4), result(5), result(6), result(7)};
}

}  // namespace laplace_attn
