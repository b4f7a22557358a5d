// nystrom_attention (SPEC 2.7): linear-time attention from m landmarks,
//   out = Norm(C_q) · NS⁻¹(Norm(W)) · (Norm(C_k) · V),
// C_q = κ(Q, K̃) [N×m], W = κ(Q̃, K̃) [m×m], C_k = κ(Q̃, K) [m×N], with landmarks Q̃, K̃
// the masked means of m contiguous segments of the tokens.
//
// With row normalisation each factor times a matrix is an attention, so the
// factors are never formed: laplacian_attention (or softmax attention for the
// "softmax" kernel) computes them with the minimum-distance rescaling, which keeps
// every row finite. The injective normalisation needs the raw kernel matrices
// (O(N·m)). Everything is a composite of registered operators, so autograd,
// fake tensors and export come from them.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <limits>

#include "laplace_attn/ops.h"
#include "ops/packed_sequences.h"

namespace laplace_attn {
namespace {

constexpr const char* kOp = "nystrom_attention";

struct Landmarks {
  at::Tensor q, k;     // [B, H, m, D]
  at::Tensor key_pad;  // [B, m] bool: true where a segment holds no unpadded token
};

// Segment s covers tokens [floor(s N / m), floor((s + 1) N / m)); its landmark is
// the mean of the segment's unpadded tokens, computed as one matrix product with
// an [m, N] averaging matrix, so any N works.
Landmarks make_landmarks(const at::Tensor& q, const at::Tensor& k, int64_t m,
                         const std::optional<at::Tensor>& key_padding_mask) {
  const int64_t B = q.size(0), N = q.size(2);
  const auto opts = q.options();
  const at::Tensor token = at::arange(N, opts.dtype(at::kLong));
  const at::Tensor segment = at::div(token * m, N, "floor");  // segment of each token
  const at::Tensor member =
      at::arange(m, opts.dtype(at::kLong)).unsqueeze(1).eq(segment.unsqueeze(0));  // [m, N]
  at::Tensor weight = member.to(opts.dtype()).unsqueeze(0).expand({B, m, N});
  if (key_padding_mask) {
    weight = weight * key_padding_mask->logical_not().to(opts.dtype()).unsqueeze(1);
  }
  const at::Tensor count = weight.sum(-1, /*keepdim=*/true);                // [B, m, 1]
  const at::Tensor average = (weight / count.clamp_min(1.0)).unsqueeze(1);  // [B, 1, m, N]
  return {at::matmul(average, q), at::matmul(average, k), count.squeeze(-1).eq(0)};
}

// Norm(κ(x1, x2)) · values for row normalisation: an attention.
at::Tensor row_normalised_product(const at::Tensor& x1, const at::Tensor& x2,
                                  const at::Tensor& values, const std::string& kernel,
                                  const at::Tensor& inv_lambda,
                                  const std::optional<at::Tensor>& key_pad) {
  if (kernel == "laplacian")
    return laplacian_attention(x1, x2, values, inv_lambda, key_pad);
  std::optional<at::Tensor> keep;
  if (key_pad)
    keep = key_pad->logical_not().unsqueeze(1).unsqueeze(1);  // [B, 1, 1, M]
  at::Tensor out = at::scaled_dot_product_attention(x1, x2, values, keep);
  // PyTorch's fused CPU attention returns 0 for a query row holding NaN, where
  // the softmax is NaN: put the NaN back.
  out = at::where(x1.isfinite().all(-1, /*keepdim=*/true), out,
                  std::numeric_limits<double>::quiet_NaN());
  if (!key_pad)
    return out;
  // A row with every key masked sees nothing, so it is 0 (SDPA gives NaN there);
  // only those rows are zeroed, so NaN from the inputs stays NaN.
  const at::Tensor blind = key_pad->all(-1).view({-1, 1, 1, 1});
  return out.masked_fill(blind, 0.0);
}

// The injective normalisation: (G - rowmean) / sqrt(rowvar + eps) + 1 / M.
at::Tensor injective(const at::Tensor& g, const std::optional<at::Tensor>& key_pad) {
  const int64_t M = g.size(-1);
  at::Tensor keep = at::ones_like(g);
  if (key_pad)
    keep = keep * key_pad->logical_not().to(g.scalar_type()).unsqueeze(1).unsqueeze(1);
  const at::Tensor n = keep.sum(-1, true).clamp_min(1.0);
  const at::Tensor mean = (g * keep).sum(-1, true) / n;
  const at::Tensor var = ((g - mean).square() * keep).sum(-1, true) / n;
  return ((g - mean) / at::sqrt(var + 1e-6) + 1.0 / M) * keep;
}

at::Tensor raw_kernel(const at::Tensor& x1, const at::Tensor& x2, const std::string& kernel,
                      const at::Tensor& inv_lambda) {
  if (kernel == "laplacian")
    return laplacian_kernel(x1, x2, inv_lambda);
  return at::exp(at::matmul(x1, x2.mT()) / std::sqrt(static_cast<double>(x1.size(-1))));
}

// --- Packed variable-length batches ---------------------------------------------
//
// Each sequence gets its own num_landmarks segments, so the landmarks are
// [n, H, m, D] for n sequences and the m x m inverse is batched over sequences;
// the two products with N rows or columns are packed attentions. Everything has
// static shapes (the offsets are only read by the packed attention), so this
// traces like the dense form. A sequence shorter than m leaves some of its
// segments empty: they drop out as padded landmarks do.

// Offsets of n packed groups of m rows: 0, m, 2m, ...
at::Tensor landmark_offsets(int64_t n, int64_t m, const at::Tensor& like) {
  return at::arange(n + 1, like.options().dtype(at::kInt)) * static_cast<int32_t>(m);
}

// The sequence of every packed row, [N] int64.
at::Tensor sequence_of_rows(const at::Tensor& cu_seqlens, int64_t rows) {
  const at::Tensor ends = cu_seqlens.to(at::kLong).narrow(0, 1, cu_seqlens.size(0) - 1);
  return at::searchsorted(ends, at::arange(rows, ends.options()), /*out_int32=*/false,
                          /*right=*/true);
}

Landmarks make_packed_landmarks(const at::Tensor& q, const at::Tensor& k, int64_t m,
                                const at::Tensor& cu_seqlens) {
  const int64_t H = q.size(1), N = q.size(2), n = cu_seqlens.size(0) - 1;
  const at::Tensor offsets = cu_seqlens.to(at::kLong);
  const at::Tensor seq = sequence_of_rows(cu_seqlens, N);
  const at::Tensor start = offsets.index_select(0, seq);
  const at::Tensor length = offsets.index_select(0, seq + 1) - start;
  const at::Tensor position = at::arange(N, offsets.options()) - start;
  const at::Tensor slot = seq * m + at::div(position * m, length, "floor");  // [N]
  const at::Tensor count =
      at::zeros({n * m}, q.options()).index_add(0, slot, at::ones({N}, q.options()));
  const at::Tensor scale = count.clamp_min(1.0).reciprocal().view({1, n * m, 1});
  auto mean = [&](const at::Tensor& x) {  // [1, H, N, D] -> [n, H, m, D]
    const at::Tensor sum =
        at::zeros({H, n * m, x.size(3)}, x.options()).index_add(1, slot, x.select(0, 0));
    return (sum * scale).view({H, n, m, x.size(3)}).permute({1, 0, 2, 3});
  };
  return {mean(q), mean(k), count.eq(0).view({n, m})};
}

// [n, H, m, D] -> [1, H, n m, D], the layout of a packed attention's rows.
at::Tensor pack_groups(const at::Tensor& x) {
  return x.permute({1, 0, 2, 3}).reshape({1, x.size(1), x.size(0) * x.size(2), x.size(3)});
}

at::Tensor unpack_groups(const at::Tensor& x, int64_t n) {
  return x.view({x.size(1), n, x.size(2) / n, x.size(3)}).permute({1, 0, 2, 3});
}

// Row-normalised attention of packed rows x1 over packed rows x2, each row
// seeing only its own sequence's (unpadded) columns.
at::Tensor packed_row_normalised_product(const at::Tensor& x1, const at::Tensor& x2,
                                         const at::Tensor& values, const std::string& kernel,
                                         const at::Tensor& inv_lambda,
                                         const std::optional<at::Tensor>& key_pad,
                                         const at::Tensor& cu_rows, const at::Tensor& cu_cols) {
  if (kernel == "laplacian")
    return laplacian_attention(x1, x2, values, inv_lambda, key_pad, false, cu_rows, cu_cols);
  at::Tensor keep = sequence_of_rows(cu_rows, x1.size(2))
                        .unsqueeze(1)
                        .eq(sequence_of_rows(cu_cols, x2.size(2)).unsqueeze(0));  // [N1, N2]
  if (key_pad)
    keep = keep.logical_and(key_pad->logical_not());
  const at::Tensor visible = keep.any(-1).view({1, 1, -1, 1});
  const at::Tensor out =
      at::scaled_dot_product_attention(x1, x2, values, keep.view({1, 1, x1.size(2), x2.size(2)}));
  return out.masked_fill(visible.logical_not(), 0.0);
}

at::Tensor packed_nystrom_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    int64_t num_landmarks, const std::string& kernel,
                                    const at::Tensor& inv_lambda, int64_t iters,
                                    const at::Tensor& cu_seqlens) {
  const int64_t n = cu_seqlens.size(0) - 1, m = num_landmarks, H = q.size(1);
  const Landmarks lm = make_packed_landmarks(q, k, m, cu_seqlens);
  const at::Tensor eye = at::eye(m, q.options());
  at::Tensor w_norm = row_normalised_product(lm.q, lm.k, eye.expand({n, H, m, m}), kernel,
                                             inv_lambda, std::optional<at::Tensor>(lm.key_pad));
  const at::Tensor empty = lm.key_pad.to(q.scalar_type()).unsqueeze(1).unsqueeze(-1);  // [n,1,m,1]
  w_norm = w_norm * (1 - empty) * (1 - empty.mT()) + eye * empty;
  const at::Tensor w_inv = newton_schulz_inverse(w_norm, iters, 3, 0.0);
  const at::Tensor cu_landmarks = landmark_offsets(n, m, cu_seqlens);
  const at::Tensor right = packed_row_normalised_product(pack_groups(lm.q), k, v, kernel,
                                                         inv_lambda, std::nullopt, cu_landmarks,
                                                         cu_seqlens);  // [1, H, n m, E]
  const at::Tensor mixed = pack_groups(at::matmul(w_inv, unpack_groups(right, n)));
  return packed_row_normalised_product(q, pack_groups(lm.k), mixed, kernel, inv_lambda,
                                       lm.key_pad.view({1, n * m}), cu_seqlens, cu_landmarks);
}

at::Tensor nystrom_attention_composite(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, int64_t num_landmarks,
                                       c10::string_view kernel_view,
                                       const std::optional<at::Tensor>& inv_lambda_opt,
                                       c10::string_view normalization_view, int64_t iters,
                                       const std::optional<at::Tensor>& key_padding_mask,
                                       const std::optional<at::Tensor>& cu_seqlens) {
  const std::string kernel(kernel_view), normalization(normalization_view);
  TORCH_CHECK(kernel == "laplacian" || kernel == "softmax", kOp,
              ": expected kernel \"laplacian\" or \"softmax\", but got \"", kernel, "\"");
  TORCH_CHECK(normalization == "row" || normalization == "injective", kOp,
              ": expected normalization \"row\" or \"injective\", but got \"", normalization, "\"");
  TORCH_CHECK(num_landmarks > 0, kOp, ": expected num_landmarks > 0, but got ", num_landmarks);
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.size(2) == q.size(2) &&
                  v.size(0) == q.size(0) && v.size(1) == q.size(1),
              kOp,
              ": expected q, k of shape [B, H, N, D] and v of shape [B, H, N, E] "
              "(self-attention), but got ",
              q.sizes(), ", ", k.sizes(), " and ", v.sizes());
  TORCH_CHECK(kernel == "softmax" || inv_lambda_opt.has_value(), kOp,
              ": the laplacian kernel needs inv_lambda (a scalar or [H] tensor)");
  const at::Tensor inv_lambda =
      inv_lambda_opt ? *inv_lambda_opt : at::ones({}, q.options());  // unused for softmax
  if (key_padding_mask) {
    TORCH_CHECK(
        key_padding_mask->scalar_type() == at::kBool && key_padding_mask->dim() == 2 &&
            key_padding_mask->size(0) == q.size(0) && key_padding_mask->size(1) == q.size(2),
        kOp, ": expected key_padding_mask of dtype bool and shape [B, N] = [", q.size(0), ", ",
        q.size(2), "], but got ", key_padding_mask->scalar_type(), " ", key_padding_mask->sizes());
  }
  if (cu_seqlens) {
    TORCH_CHECK(!key_padding_mask, kOp,
                ": expected no key_padding_mask with cu_seqlens (a packed batch has no padding)");
    TORCH_CHECK(normalization == "row", kOp,
                ": cu_seqlens supports normalization \"row\" only, but got \"", normalization,
                "\"");
    packed_sequence_count(kOp, "cu_seqlens", *cu_seqlens, "q", q, q);
    return packed_nystrom_attention(q, k, v, num_landmarks, kernel, inv_lambda, iters, *cu_seqlens);
  }
  const int64_t N = q.size(2);
  if (N == 0)
    return at::zeros({q.size(0), q.size(1), 0, v.size(3)}, v.options());
  // With a landmark per token the approximation is the attention itself.
  if (num_landmarks >= N && normalization == "row") {
    return row_normalised_product(q, k, v, kernel, inv_lambda, key_padding_mask);
  }
  const Landmarks lm = make_landmarks(q, k, std::min(num_landmarks, N), key_padding_mask);
  const int64_t m = lm.q.size(2);
  const at::Tensor eye = at::eye(m, q.options());
  const std::optional<at::Tensor> lm_pad(lm.key_pad);
  at::Tensor w_norm, left, right;
  if (normalization == "row") {
    w_norm = row_normalised_product(lm.q, lm.k, eye.expand({q.size(0), q.size(1), m, m}), kernel,
                                    inv_lambda, lm_pad);
  } else {
    w_norm = injective(raw_kernel(lm.q, lm.k, kernel, inv_lambda), lm_pad);
  }
  // Empty landmark segments get an identity row and column, so W stays invertible
  // and they contribute nothing.
  const at::Tensor empty = lm.key_pad.to(q.scalar_type()).unsqueeze(1).unsqueeze(-1);  // [B,1,m,1]
  w_norm = w_norm * (1 - empty) * (1 - empty.mT()) + eye * empty;
  const at::Tensor w_inv = newton_schulz_inverse(w_norm, iters, 3, 0.0);
  if (normalization == "row") {
    right = row_normalised_product(lm.q, k, v, kernel, inv_lambda, key_padding_mask);  // [m, E]
    return row_normalised_product(q, lm.k, at::matmul(w_inv, right), kernel, inv_lambda, lm_pad);
  }
  const at::Tensor c_k = injective(raw_kernel(lm.q, k, kernel, inv_lambda), key_padding_mask);
  const at::Tensor c_q = injective(raw_kernel(q, lm.k, kernel, inv_lambda), lm_pad);
  return at::matmul(c_q, at::matmul(w_inv, at::matmul(c_k, v)));
}

}  // namespace

at::Tensor nystrom_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             int64_t num_landmarks, const std::string& kernel,
                             const std::optional<at::Tensor>& inv_lambda,
                             const std::string& normalization, int64_t iters,
                             const std::optional<at::Tensor>& key_padding_mask,
                             const std::optional<at::Tensor>& cu_seqlens) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("laplace_attn::nystrom_attention", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                            c10::string_view, const std::optional<at::Tensor>&, c10::string_view,
                            int64_t, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&)>();
  return op.call(q, k, v, num_landmarks, kernel, inv_lambda, normalization, iters, key_padding_mask,
                 cu_seqlens);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def(
      "nystrom_attention(Tensor q, Tensor k, Tensor v, int num_landmarks, "
      "str kernel=\"laplacian\", Tensor? inv_lambda=None, str normalization=\"row\", "
      "int iters=6, Tensor? key_padding_mask=None, Tensor? cu_seqlens=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(laplace_attn, CompositeImplicitAutograd, m) {
  m.impl("nystrom_attention", &nystrom_attention_composite);
}

}  // namespace laplace_attn
