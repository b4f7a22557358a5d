// laplacian_kernel's tensor handling, shared by the CPU and CUDA registrations:
// validation, dtype conversion, padding (for a backend that asks for it:
// kPaddedInputs) and allocation. A Backend supplies
//   static void forward(const LaplacianKernelParams<T>&);
//   static void backward(const LaplacianKernelParams<T>&);  // fills the requested grads
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "laplacian_kernel_math.h"
#include "ops/dtype_policy.h"
#include "ops/laplacian_inputs.h"
#include "ops/laplacian_kernel.h"

namespace laplace_attn {

// In the compute dtype, inv_lambda as [H]. With the CPU layout (padded), D is
// padded and x2_t holds x2 transposed; the CUDA kernels take the inputs as they
// are (x2_t undefined).
struct LaplacianKernelInputs {
  at::Tensor x1, x2, x2_t, inv_lambda;
  at::ScalarType compute_type;
};

inline LaplacianKernelInputs prepare_laplacian_kernel_inputs(const at::Tensor& x1,
                                                             const at::Tensor& x2,
                                                             const at::Tensor& inv_lambda,
                                                             bool padded) {
  LaplacianKernelInputs in;
  in.compute_type = x1.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  in.inv_lambda = inv_lambda_per_head("laplacian_kernel", inv_lambda, x1.size(1), in.compute_type);
  const int64_t multiple = padded ? kLaplacianPadDim : 1;
  in.x1 = pad_last(x1.to(in.compute_type), multiple);
  in.x2 = pad_last(x2.to(in.compute_type), multiple);
  if (padded)
    in.x2_t = pad_last(in.x2.transpose(2, 3), kLaplacianPadCols);
  return in;
}

template <class T, class A>
LaplacianKernelParams<T, A> laplacian_kernel_params(const LaplacianKernelInputs& in) {
  LaplacianKernelParams<T, A> p;
  p.batch = in.x1.size(0);
  p.heads = in.x1.size(1);
  p.rows = in.x1.size(2);
  p.cols = in.x2.size(2);
  p.dim = in.x1.size(3);
  p.x1 = in.x1.const_data_ptr<T>();
  p.x2 = in.x2.const_data_ptr<T>();
  p.x2_t = in.x2_t.defined() ? in.x2_t.const_data_ptr<T>() : nullptr;
  p.inv_lambda = in.inv_lambda.const_data_ptr<T>();
  return p;
}

template <class Backend>
at::Tensor run_laplacian_kernel(const at::Tensor& x1, const at::Tensor& x2,
                                const at::Tensor& inv_lambda) {
  check_laplacian_kernel_inputs("laplacian_kernel", x1, x2, inv_lambda);
  const LaplacianKernelInputs in =
      prepare_laplacian_kernel_inputs(x1, x2, inv_lambda, Backend::kPaddedInputs);
  // The [B, H, N, M] result in x1's dtype when the backend writes 16-bit values.
  const bool native = Backend::kNativeActivations;
  at::Tensor out = at::empty({x1.size(0), x1.size(1), x1.size(2), x2.size(2)},
                             native ? x1.options() : in.x1.options());
  dispatch_activation_types<Backend::kNativeActivations>(x1.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    auto p = laplacian_kernel_params<T, A>(in);
    p.out = mutable_activation_data<A>(out);
    Backend::forward(p);
  });
  return out.to(x1.scalar_type());
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_laplacian_kernel_backward(
    const at::Tensor& grad, const at::Tensor& x1, const at::Tensor& x2,
    const at::Tensor& inv_lambda, const at::Tensor& kernel, std::array<bool, 3> output_mask) {
  constexpr const char* op = "_laplacian_kernel_backward";
  check_laplacian_kernel_inputs(op, x1, x2, inv_lambda);
  const std::vector<int64_t> shape{x1.size(0), x1.size(1), x1.size(2), x2.size(2)};
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(shape) && kernel.sizes() == grad.sizes(), op,
              ": expected grad and kernel of shape [B, H, N, M] = ", at::IntArrayRef(shape),
              ", but got ", grad.sizes(), " and ", kernel.sizes());
  const LaplacianKernelInputs in =
      prepare_laplacian_kernel_inputs(x1, x2, inv_lambda, Backend::kPaddedInputs);
  // The matrices in place when the backend reads 16-bit values, else converted.
  const auto matrix_type = Backend::kNativeActivations ? x1.scalar_type() : in.compute_type;
  const at::Tensor g = grad.to(matrix_type).contiguous();
  const at::Tensor k = kernel.to(matrix_type).contiguous();
  const auto opts = in.x1.options();
  const bool want_lambda = output_mask[2];
  // The row pass yields grad_x1 and the weighted distances for grad_inv_lambda.
  at::Tensor grad_x1 =
      output_mask[0] || want_lambda ? at::empty(in.x1.sizes(), opts) : at::Tensor();
  at::Tensor grad_x2 = output_mask[1] ? at::empty(in.x2.sizes(), opts) : at::Tensor();
  at::Tensor distance =
      want_lambda ? at::empty({shape[0], shape[1], shape[2]}, opts) : at::Tensor();
  at::Tensor grad_lambda = want_lambda ? at::empty({shape[1]}, opts) : at::Tensor();
  dispatch_activation_types<Backend::kNativeActivations>(x1.scalar_type(), [&](auto t, auto a) {
    using T = decltype(t);
    using A = decltype(a);
    using scalar_t = T;
    auto p = laplacian_kernel_params<T, A>(in);
    p.grad = activation_data<A>(g);
    p.kernel = activation_data<A>(k);
    p.grad_x1 = grad_x1.defined() ? grad_x1.mutable_data_ptr<scalar_t>() : nullptr;
    p.grad_x2 = grad_x2.defined() ? grad_x2.mutable_data_ptr<scalar_t>() : nullptr;
    p.row_weighted_distance = distance.defined() ? distance.mutable_data_ptr<scalar_t>() : nullptr;
    p.grad_inv_lambda = grad_lambda.defined() ? grad_lambda.mutable_data_ptr<scalar_t>() : nullptr;
    Backend::backward(p);
  });
  const auto out_type = x1.scalar_type();
  const int64_t D = x1.size(3);
  auto unpad = [&](const at::Tensor& t) { return t.narrow(-1, 0, D).to(out_type).contiguous(); };
  const at::Tensor empty = at::empty({0}, x1.options());
  at::Tensor lambda_out = empty;
  if (want_lambda) {
    lambda_out =
        (inv_lambda.dim() == 0 ? grad_lambda.sum() : grad_lambda).to(inv_lambda.scalar_type());
  }
  return {output_mask[0] ? unpad(grad_x1) : empty, output_mask[1] ? unpad(grad_x2) : empty,
          lambda_out};
}

}  // namespace laplace_attn
