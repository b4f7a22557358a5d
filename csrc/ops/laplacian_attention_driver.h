// laplacian_attention's tensor handling, shared by the CPU and CUDA
// registrations. A Backend supplies
//   static void forward(const LaplacianAttentionParams<T>&);   // out, lse
//   static void backward(const LaplacianAttentionParams<T>&);  // the non-null grads
//   static void reduce_lambda(const at::Tensor& rows, at::Tensor& per_head);
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <limits>

#include "laplacian_attention_math.h"
#include "ops/dtype_policy.h"
#include "ops/laplacian_attention.h"
#include "ops/laplacian_inputs.h"
#include "ops/packed_sequences.h"

namespace laplace_attn {

// q, k, k_t, v in the storage dtype (the activations' own when the backend
// reads 16-bit values in place, the compute dtype otherwise); inv_lambda and the
// key bias in the compute dtype. With the CPU layout (padded), D and E are padded
// and k_t holds k transposed (for kLaplacianTransposeMinQueries queries or more);
// the CUDA kernels take the inputs as they are.
struct LaplacianAttentionInputs {
  at::Tensor q, k, k_t, v, inv_lambda, key_bias;
  at::ScalarType compute_type, storage_type;
};

// k or v as the kernels read it: [B, H, M, D] with contiguous rows and the heads
// evenly spaced, as the first M rows of a longer [B, H, L, D] buffer (a decoding
// cache) are, without copying them; anything else as a padded contiguous copy.
inline at::Tensor heads_in_place(const at::Tensor& t, int64_t multiple) {
  const bool rows_in_place = t.size(3) % multiple == 0 && t.stride(3) == 1 &&
                             t.stride(2) == t.size(3) && t.stride(0) == t.size(1) * t.stride(1) &&
                             t.stride(1) >= t.size(2) * t.size(3);
  return rows_in_place ? t : pad_last(t, multiple);
}

inline LaplacianAttentionInputs prepare_laplacian_attention_inputs(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& inv_lambda,
    const std::optional<at::Tensor>& key_padding_mask, bool padded, bool native) {
  LaplacianAttentionInputs in;
  in.compute_type = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  in.storage_type = native ? q.scalar_type() : in.compute_type;
  in.inv_lambda =
      inv_lambda_per_head("laplacian_attention", inv_lambda, q.size(1), in.compute_type);
  const int64_t multiple = padded ? kLaplacianPadDim : 1;
  in.q = pad_last(q.to(in.storage_type), multiple);
  in.k = heads_in_place(k.to(in.storage_type), multiple);
  if (padded && q.size(2) >= kLaplacianTransposeMinQueries)
    in.k_t = pad_last(in.k.transpose(2, 3), kLaplacianPadCols);
  in.v = heads_in_place(v.to(in.storage_type), multiple);
  // One representation for both mask kinds: a bias added to the logits.
  if (key_padding_mask && key_padding_mask->scalar_type() == at::kBool) {
    in.key_bias = at::zeros(key_padding_mask->sizes(), in.inv_lambda.options())
                      .masked_fill_(*key_padding_mask, -std::numeric_limits<double>::infinity());
  } else if (key_padding_mask) {
    in.key_bias = key_padding_mask->to(in.compute_type).contiguous();
  }
  return in;
}

template <class T, class A>
LaplacianAttentionParams<T, A> laplacian_attention_params(const LaplacianAttentionInputs& in,
                                                          bool causal) {
  LaplacianAttentionParams<T, A> p;
  p.batch = in.q.size(0);
  p.heads = in.q.size(1);
  p.queries = in.q.size(2);
  p.keys = in.k.size(2);
  p.dim = in.q.size(3);
  p.value_dim = in.v.size(3);
  p.causal = causal;
  p.q = activation_data<A>(in.q);
  p.k = activation_data<A>(in.k);
  p.k_t = in.k_t.defined() ? activation_data<A>(in.k_t) : nullptr;
  p.v = activation_data<A>(in.v);
  p.k_head_stride = in.k.stride(1);
  p.v_head_stride = in.v.stride(1);
  p.inv_lambda = in.inv_lambda.const_data_ptr<T>();
  p.key_bias = in.key_bias.defined() ? in.key_bias.const_data_ptr<T>() : nullptr;
  return p;
}

// A packed batch: the queries and keys of each sequence, as read from cu_seqlens
// and cu_seqlens_k (the same offsets for self-attention).
struct PackedAttention {
  PackedSequences queries, keys;
};

inline PackedAttention read_packed_attention(const char* op, const at::Tensor& q,
                                             const at::Tensor& k, const at::Tensor& cu_seqlens,
                                             const std::optional<at::Tensor>& cu_seqlens_k) {
  PackedAttention packed;
  packed.queries =
      read_packed_sequences(op, "cu_seqlens", cu_seqlens, "q", q, q.size(2), "q.size(2)");
  packed.keys =
      cu_seqlens_k
          ? read_packed_sequences(op, "cu_seqlens_k", *cu_seqlens_k, "k", k, k.size(2), "k.size(2)")
          : read_packed_sequences(op, "cu_seqlens", cu_seqlens, "k", k, k.size(2), "k.size(2)");
  return packed;
}

// Views of one sequence's rows in a packed [1, H, N, D] tensor (or [1, N]
// mask); the kernels' input preparation makes them contiguous.
inline at::Tensor rows_of(const at::Tensor& t, const PackedSequences& seqs, int64_t i,
                          int64_t dim = 2) {
  return t.narrow(dim, seqs.start(i), seqs.length(i));
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor> run_laplacian_attention_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& inv_lambda,
    const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k) {
  constexpr const char* op = "laplacian_attention";
  check_laplacian_attention_inputs(op, q, k, v, inv_lambda, key_padding_mask, cu_seqlens,
                                   cu_seqlens_k);
  if (cu_seqlens) {
    const PackedAttention packed = read_packed_attention(op, q, k, *cu_seqlens, cu_seqlens_k);
    at::Tensor out = at::empty({1, q.size(1), q.size(2), v.size(3)}, q.options());
    at::Tensor lse =
        at::empty({1, q.size(1), q.size(2)},
                  q.options().dtype(q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
    for (int64_t i = 0; i < packed.queries.count(); ++i) {
      std::optional<at::Tensor> mask;
      if (key_padding_mask)
        mask = rows_of(*key_padding_mask, packed.keys, i, 1);
      auto [out_i, lse_i] = run_laplacian_attention_forward<Backend>(
          rows_of(q, packed.queries, i), rows_of(k, packed.keys, i), rows_of(v, packed.keys, i),
          inv_lambda, mask, causal, std::nullopt, std::nullopt);
      rows_of(out, packed.queries, i).copy_(out_i);
      rows_of(lse, packed.queries, i).copy_(lse_i);
    }
    return {out, lse};
  }
  const LaplacianAttentionInputs in = prepare_laplacian_attention_inputs(
      q, k, v, inv_lambda, key_padding_mask, Backend::kPaddedInputs, Backend::kNativeActivations);
  at::Tensor out = at::empty({q.size(0), q.size(1), q.size(2), in.v.size(3)}, in.q.options());
  at::Tensor lse = at::empty({q.size(0), q.size(1), q.size(2)}, in.inv_lambda.options());
  dispatch_activation_types<Backend::kNativeActivations>(q.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    auto p = laplacian_attention_params<T, A>(in, causal);
    p.out = mutable_activation_data<A>(out);
    p.lse = lse.mutable_data_ptr<T>();
    Backend::forward(p);
  });
  // lse stays in the compute type: the backward needs it exactly.
  return {out.narrow(-1, 0, v.size(3)).to(q.scalar_type()).contiguous(), lse};
}

// Per-sequence gradients into slices; inv_lambda's summed in sequence order.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_packed_laplacian_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const PackedAttention& packed, const at::Tensor& out, const at::Tensor& lse,
    std::array<bool, 4> output_mask);

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_laplacian_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const std::optional<at::Tensor>& cu_seqlens, const std::optional<at::Tensor>& cu_seqlens_k,
    const at::Tensor& out, const at::Tensor& lse, std::array<bool, 4> output_mask) {
  constexpr const char* op = "_laplacian_attention_backward";
  check_laplacian_attention_inputs(op, q, k, v, inv_lambda, key_padding_mask, cu_seqlens,
                                   cu_seqlens_k);
  TORCH_CHECK(grad_out.sizes() == out.sizes(), op, ": expected grad_out of shape ", out.sizes(),
              ", but got ", grad_out.sizes());
  if (cu_seqlens) {
    return run_packed_laplacian_attention_backward<Backend>(
        grad_out, q, k, v, inv_lambda, key_padding_mask, causal,
        read_packed_attention(op, q, k, *cu_seqlens, cu_seqlens_k), out, lse, output_mask);
  }
  const LaplacianAttentionInputs in = prepare_laplacian_attention_inputs(
      q, k, v, inv_lambda, key_padding_mask, Backend::kPaddedInputs, Backend::kNativeActivations);
  const int64_t multiple = Backend::kPaddedInputs ? kLaplacianPadDim : 1;
  const at::Tensor dout = pad_last(grad_out.to(in.storage_type), multiple);
  const at::Tensor lse_c = lse.to(in.compute_type).contiguous();
  const auto compute = in.inv_lambda.options();
  // delta = dO . O per row: from the 16-bit rows by the backend that reads them,
  // else here in the compute type.
  at::Tensor saved_out, delta;
  if (Backend::kNativeActivations) {
    saved_out = pad_last(out.to(in.storage_type), multiple);
    // With E = 0 there is nothing to read (the rows are null): delta is 0.
    delta = v.size(3) == 0 ? at::zeros(lse.sizes(), compute) : at::empty(lse.sizes(), compute);
  } else {
    delta = grad_out.to(in.compute_type).mul(out.to(in.compute_type)).sum(-1).contiguous();
  }
  const auto opts = in.q.options();
  const bool want_lambda = output_mask[3];
  const bool rows = output_mask[0] || want_lambda, cols = output_mask[1] || output_mask[2];
  at::Tensor grad_q = rows ? at::empty(in.q.sizes(), opts) : at::Tensor();
  at::Tensor grad_k = cols ? at::empty(in.k.sizes(), opts) : at::Tensor();
  at::Tensor grad_v = cols ? at::empty(in.v.sizes(), opts) : at::Tensor();
  at::Tensor row_lambda = want_lambda ? at::empty(lse.sizes(), compute) : at::Tensor();
  dispatch_activation_types<Backend::kNativeActivations>(q.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    auto p = laplacian_attention_params<T, A>(in, causal);
    p.saved_lse = lse_c.const_data_ptr<T>();
    p.grad_out = activation_data<A>(dout);
    p.saved_out = saved_out.defined() ? activation_data<A>(saved_out) : nullptr;
    p.delta = delta.mutable_data_ptr<T>();
    p.grad_q = rows ? mutable_activation_data<A>(grad_q) : nullptr;
    p.grad_k = cols ? mutable_activation_data<A>(grad_k) : nullptr;
    p.grad_v = cols ? mutable_activation_data<A>(grad_v) : nullptr;
    p.row_grad_lambda = want_lambda ? row_lambda.mutable_data_ptr<T>() : nullptr;
    Backend::backward(p);
  });
  const auto out_type = q.scalar_type();
  const at::Tensor empty = at::empty({0}, q.options());
  auto unpad = [&](const at::Tensor& t, int64_t n) {
    return t.narrow(-1, 0, n).to(out_type).contiguous();
  };
  at::Tensor grad_lambda = empty;
  if (want_lambda) {
    at::Tensor per_head = at::empty({q.size(1)}, compute);
    Backend::reduce_lambda(row_lambda, per_head);
    grad_lambda = (inv_lambda.dim() == 0 ? per_head.sum() : per_head).to(inv_lambda.scalar_type());
  }
  return {output_mask[0] ? unpad(grad_q, q.size(3)) : empty,
          output_mask[1] ? unpad(grad_k, k.size(3)) : empty,
          output_mask[2] ? unpad(grad_v, v.size(3)) : empty, grad_lambda};
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_packed_laplacian_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& inv_lambda, const std::optional<at::Tensor>& key_padding_mask, bool causal,
    const PackedAttention& packed, const at::Tensor& out, const at::Tensor& lse,
    std::array<bool, 4> output_mask) {
  const at::Tensor empty = at::empty({0}, q.options());
  at::Tensor grad_q = output_mask[0] ? at::empty(q.sizes(), q.options()) : empty;
  at::Tensor grad_k = output_mask[1] ? at::empty(k.sizes(), k.options()) : empty;
  at::Tensor grad_v = output_mask[2] ? at::empty(v.sizes(), v.options()) : empty;
  at::Tensor grad_lambda =
      output_mask[3] ? at::zeros(inv_lambda.sizes(),
                                 inv_lambda.options().dtype(
                                     q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat))
                     : empty;
  for (int64_t i = 0; i < packed.queries.count(); ++i) {
    std::optional<at::Tensor> mask;
    if (key_padding_mask)
      mask = rows_of(*key_padding_mask, packed.keys, i, 1);
    auto [gq, gk, gv, gl] = run_laplacian_attention_backward<Backend>(
        rows_of(grad_out, packed.queries, i), rows_of(q, packed.queries, i),
        rows_of(k, packed.keys, i), rows_of(v, packed.keys, i), inv_lambda, mask, causal,
        std::nullopt, std::nullopt, rows_of(out, packed.queries, i),
        rows_of(lse, packed.queries, i), output_mask);
    if (output_mask[0])
      rows_of(grad_q, packed.queries, i).copy_(gq);
    if (output_mask[1])
      rows_of(grad_k, packed.keys, i).copy_(gk);
    if (output_mask[2])
      rows_of(grad_v, packed.keys, i).copy_(gv);
    if (output_mask[3])
      grad_lambda.add_(gl);
  }
  return {grad_q, grad_k, grad_v,
          output_mask[3] ? grad_lambda.to(inv_lambda.scalar_type()) : grad_lambda};
}

}  // namespace laplace_attn
