// newton_schulz_inverse (SPEC 2.5): Z ~ A^-1 (the pseudo-inverse for nearly
// singular A) by Newton-Schulz iteration. The iteration is a handful of matrix
// products, so one device-generic implementation (CompositeExplicitAutograd)
// serves CPU, CUDA and fake tensors; autograd uses the implicit formula
// dA = -Z^T G Z^T instead of unrolling the iterations.
#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/where.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <limits>

#include "laplace_attn/ops.h"
#include "ops/newton_schulz_inverse.h"

namespace laplace_attn {
namespace {

void check_inputs(const at::Tensor& A, int64_t iters, int64_t order, double ridge) {
  constexpr const char* op = "newton_schulz_inverse";
  TORCH_CHECK(A.dim() >= 2 && A.size(-1) == A.size(-2), op,
              ": expected A of shape [..., m, m] (square matrices), but got ", A.sizes());
  const auto t = A.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf, op,
              ": expected A of dtype float32, float64, bfloat16 or float16, but got ", t);
  TORCH_CHECK(iters >= 0, op, ": expected iters >= 0, but got ", iters);
  TORCH_CHECK(order == 2 || order == 3, op, ": expected order 2 or 3, but got ", order);
  TORCH_CHECK(ridge >= 0, op, ": expected ridge >= 0, but got ", ridge);
}

// Frobenius norm of I - AZ per matrix, as [..., 1, 1].
at::Tensor residual(const at::Tensor& az, const at::Tensor& I) {
  return at::linalg_vector_norm(I - az, 2, at::IntArrayRef{-2, -1}, /*keepdim=*/true);
}

at::Tensor newton_schulz_inverse_impl(const at::Tensor& A, int64_t iters, int64_t order,
                                      double ridge) {
  check_inputs(A, iters, order, ridge);
  // The matrices are small (m x m landmarks) and float32 iterations lose the
  // inverse from cond(A) ~ 1e4 on (float64 iterates rounded to float32 keep it
  // to 1e-4 there), so every dtype iterates in float64.
  const auto compute = at::kDouble;
  const int64_t m = A.size(-1);
  if (m == 0)
    return A.clone();  // the inverse of a 0 x 0 matrix
  const at::Tensor I = at::eye(m, A.options().dtype(compute));
  at::Tensor a = A.to(compute);
  if (ridge != 0.0)
    a = a + ridge * I;
  // Per-matrix scaling Z0 = A^T / (||A||_1 ||A||_inf) puts every singular value of
  // A Z0 in (0, 1], where the iteration converges. Dividing by one norm at a time
  // keeps the scale representable for any representable A; a zero matrix gets Z = 0.
  const at::Tensor abs = a.abs();
  const double tiny = std::numeric_limits<double>::min();
  const at::Tensor norm_1 = abs.sum(-2).amax(-1).clamp_min(tiny).unsqueeze(-1).unsqueeze(-1);
  const at::Tensor norm_inf = abs.sum(-1).amax(-1).clamp_min(tiny).unsqueeze(-1).unsqueeze(-1);
  at::Tensor z = a.mT() / norm_1 / norm_inf;
  at::Tensor az = at::matmul(a, z);
  at::Tensor error = residual(az, I);
  for (int64_t k = 0; k < iters; ++k) {
    at::Tensor next;
    if (order == 2) {
      next = at::matmul(z, 2.0 * I - az);  // Z (2I - AZ)
    } else {
      // Z/4 (13I - AZ (15I - AZ (7I - AZ))), the order-3 step of Nystromformer
      const at::Tensor inner = at::matmul(az, 7.0 * I - az);
      next = 0.25 * at::matmul(z, 13.0 * I - at::matmul(az, 15.0 * I - inner));
    }
    // In exact arithmetic ||I - AZ|| falls at every step. Once rounding dominates
    // (cond(A) near 1e16) a step can raise it and the iteration then diverges:
    // a matrix keeps its last iterate when the residual grows, so the result is the
    // best iterate, never an overflow. NaN compares false, so NaN stays NaN.
    const at::Tensor next_az = at::matmul(a, next);
    const at::Tensor next_error = residual(next_az, I);
    const at::Tensor better = next_error <= error;
    z = at::where(better, next, z);
    az = at::where(better, next_az, az);
    error = at::where(better, next_error, error);
  }
  return z.to(A.scalar_type());
}

at::Tensor newton_schulz_inverse_backward_impl(const at::Tensor& grad, const at::Tensor& z) {
  TORCH_CHECK(grad.sizes() == z.sizes(), "_newton_schulz_inverse_backward: expected grad of ",
              "shape ", z.sizes(), ", but got ", grad.sizes());
  const at::Tensor zt = z.mT();
  return -at::matmul(at::matmul(zt, grad), zt);
}

}  // namespace

at::Tensor newton_schulz_inverse(const at::Tensor& A, int64_t iters, int64_t order, double ridge) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::newton_schulz_inverse", "")
                       .typed<decltype(newton_schulz_inverse)>();
  return op.call(A, iters, order, ridge);
}

at::Tensor newton_schulz_inverse_backward(const at::Tensor& grad, const at::Tensor& z) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("laplace_attn::_newton_schulz_inverse_backward", "")
                       .typed<decltype(newton_schulz_inverse_backward)>();
  return op.call(grad, z);
}

TORCH_LIBRARY_FRAGMENT(laplace_attn, m) {
  m.def("newton_schulz_inverse(Tensor A, int iters=6, int order=3, float ridge=0.0) -> Tensor");
  m.def("_newton_schulz_inverse_backward(Tensor grad, Tensor Z) -> Tensor");
}

TORCH_LIBRARY_IMPL(laplace_attn, CompositeExplicitAutograd, m) {
  m.impl("newton_schulz_inverse", &newton_schulz_inverse_impl);
  m.impl("_newton_schulz_inverse_backward", &newton_schulz_inverse_backward_impl);
}

}  // namespace laplace_attn
