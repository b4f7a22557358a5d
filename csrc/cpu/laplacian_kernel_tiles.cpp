// CPU kernels of laplacian_kernel for one instruction set.
//
// The L1 distance cannot use a GEMM, so it is tiled like one: a task owns kRows
// rows of x1 and sweeps the columns two vectors at a time, with x2 transposed so
// that the columns of one dimension are contiguous. kRows x 2 accumulators stay
// in registers while the dimension loop runs; no [N, M, D] difference exists.
// The backward recomputes the differences row by row, vectorised over D.
#include "cpu/laplacian_layout.h"
#include "cpu/laplacian_kernel_tiles.h"
#include "cpu/simd.h"

namespace laplace_attn::cpu::LAPLACE_ATTN_ISA {
namespace {

constexpr int kRows = 4;
static_assert(kLaplacianPadDim % kLanes<float> == 0 && kLaplacianPadCols % (2 * kLanes<float>) == 0,
              "padding must cover whole vectors");

// libm's exp by its C name: an inline std::exp compiled here with wide
// instructions must not become the copy the rest of the library links to.

template <class T, class A>
int64_t num_forward_tasks(const LaplacianKernelParams<T, A>& p) {
  return p.batch * p.heads * ceil_div(p.rows, kRows);
}

template <class T, class A>
void forward(const LaplacianKernelParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  constexpr int64_t L = kLanes<T>;
  const int64_t D = p.dim, M = p.cols;
  const int64_t M_padded = ceil_div(M, kLaplacianPadCols) * kLaplacianPadCols;
  const int64_t row_blocks = ceil_div(p.rows, kRows);
  Buffer<T> rows(kRows * D);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t bh = task / row_blocks, h = bh % p.heads;
    const int64_t i0 = (task % row_blocks) * kRows;
    const int64_t n_rows = min_int(kRows, p.rows - i0);
    // Rows past the end are zeros: computed, never written.
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t d = 0; d < D; ++d) {
        rows[r * D + d] = r < n_rows ? p.x1[(bh * p.rows + i0 + r) * D + d] : T(0);
      }
    }
    const T* x2_t = p.x2_t + bh * D * M_padded;
    const T scale = -p.inv_lambda[h];
    for (int64_t j0 = 0; j0 < M; j0 += 2 * L) {
      Vec<T> acc[kRows][2] = {};
      for (int64_t d = 0; d < D; ++d) {
        const Vec<T> c0 = load_lanes(x2_t + d * M_padded + j0, L);
        const Vec<T> c1 = load_lanes(x2_t + d * M_padded + j0 + L, L);
#pragma GCC unroll 4
        for (int r = 0; r < kRows; ++r) {
          const T x = rows[r * D + d];
          acc[r][0] += abs_lanes<T>(x - c0);
          acc[r][1] += abs_lanes<T>(x - c1);
        }
      }
      const int64_t n_cols = min_int(2 * L, M - j0);
      for (int64_t r = 0; r < n_rows; ++r) {
        A* out = p.out + (bh * p.rows + i0 + r) * M + j0;
        for (int half = 0; half < 2 && half * L < n_cols; ++half) {
          Vec<T> kernel;
          for (int64_t l = 0; l < L; ++l)
            kernel[l] = exp_scalar(scale * acc[r][half][l]);
          // Whole vectors go to 16-bit storage in one conversion instruction.
          store_as<T>(out + half * L, kernel, min_int(L, n_cols - half * L));
        }
      }
    }
  }
}

// For one row a of one operand against every row of the other:
//   out = -inv_lambda * sum_c w(c) sign(a - b_c),  returns sum_c w(c) ||a - b_c||_1,
// with w(c) = grad * K at stride `stride` from `grad` and `kernel`.
template <class T, class A>
T signed_weighted_sum(const T* a, const T* b, int64_t count, int64_t D, const A* grad,
                      const A* kernel, int64_t stride, T inv_lambda, T* out, Vec<T>* acc) {
  constexpr int64_t L = kLanes<T>;
  const int64_t vectors = D / L;
  Vec<T> distance{};
  for (int64_t v = 0; v < vectors; ++v)
    acc[v] = Vec<T>{};
  for (int64_t c = 0; c < count; ++c) {
    const T w = to_compute<T>(grad[c * stride]) * to_compute<T>(kernel[c * stride]);
    if (w == T(0))
      continue;
    const T* bc = b + c * D;
    for (int64_t v = 0; v < vectors; ++v) {
      const Vec<T> diff = load_lanes(a + v * L, L) - load_lanes(bc + v * L, L);
      acc[v] += w * sign_lanes<T>(diff);
      distance += w * abs_lanes<T>(diff);
    }
  }
  for (int64_t v = 0; v < vectors; ++v)
    store_lanes(out + v * L, -inv_lambda * acc[v], L);
  return sum_lanes<T>(distance);
}

template <class T, class A>
void backward_rows(const LaplacianKernelParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  const int64_t D = p.dim, N = p.rows, M = p.cols;
  Buffer<Vec<T>> acc(D / kLanes<T> + 1);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t bh = task / N, i = task % N, h = bh % p.heads;
    const int64_t wi = (bh * N + i) * M;
    const T distance = signed_weighted_sum(p.x1 + (bh * N + i) * D, p.x2 + bh * M * D, M, D,
                                           p.grad + wi, p.kernel + wi, 1, p.inv_lambda[h],
                                           p.grad_x1 + (bh * N + i) * D, acc.get());
    if (p.row_weighted_distance)
      p.row_weighted_distance[bh * N + i] = distance;
  }
}

template <class T, class A>
void backward_cols(const LaplacianKernelParams<T, A>& p, int64_t task_begin, int64_t task_end) {
  const int64_t D = p.dim, N = p.rows, M = p.cols;
  Buffer<Vec<T>> acc(D / kLanes<T> + 1);
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t bh = task / M, j = task % M, h = bh % p.heads;
    const int64_t wj = bh * N * M + j;
    signed_weighted_sum(p.x2 + (bh * M + j) * D, p.x1 + bh * N * D, N, D, p.grad + wj,
                        p.kernel + wj, M, p.inv_lambda[h], p.grad_x2 + (bh * M + j) * D, acc.get());
  }
}

template <class T, class A>
LaplacianKernelKernels<T, A> kernels_for() {
  return {&num_forward_tasks<T, A>, &forward<T, A>, &backward_rows<T, A>, &backward_cols<T, A>};
}

}  // namespace

const LaplacianKernelTable& laplacian_kernel_kernels() {
  static const LaplacianKernelTable table = LAPLACE_ATTN_KERNEL_TABLE(kernels_for);
  return table;
}

}  // namespace laplace_attn::cpu::LAPLACE_ATTN_ISA
