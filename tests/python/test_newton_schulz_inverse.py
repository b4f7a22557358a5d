"""newton_schulz_inverse against torch.linalg.inv / pinv, its implicit backward,
opcheck and errors."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn


def well_conditioned(batch=(3,), m=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*batch, m, m, generator=g, dtype=torch.float64) + m * torch.eye(
        m, dtype=torch.float64)


def kernel_matrix(m=16, seed=0):
    # Like the Nystrom landmark matrix: symmetric, positive, moderately conditioned.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 8, generator=g, dtype=torch.float64)
    return torch.exp(-torch.cdist(x, x, p=1) / 4)


@pytest.mark.parametrize("order", [2, 3])
def test_converges_to_the_inverse(order, device):
    A = well_conditioned()
    Z = laplace_attn.newton_schulz_inverse(A.to(device), iters=30, order=order)
    torch.testing.assert_close(Z.cpu(), torch.linalg.inv(A), rtol=1e-12, atol=1e-13)


def test_kernel_matrix_default_iterations():
    W = kernel_matrix()
    inv = torch.linalg.inv(W)
    err = (laplace_attn.newton_schulz_inverse(W) - inv).abs().max() / inv.abs().max()
    assert err < 1e-8


def test_any_size_and_batch_shape():
    A = well_conditioned(batch=(2, 3), m=150)
    Z = laplace_attn.newton_schulz_inverse(A, iters=12)
    assert Z.shape == A.shape
    torch.testing.assert_close(Z @ A, torch.eye(150, dtype=torch.float64).expand(2, 3, 150, 150),
                               rtol=0, atol=1e-10)


def test_per_matrix_scaling():
    # One matrix 1e6 times larger than the other must not slow the other down.
    A = well_conditioned(batch=(2,))
    A[1] *= 1e6
    Z = laplace_attn.newton_schulz_inverse(A, iters=12)
    torch.testing.assert_close(Z, torch.linalg.inv(A), rtol=1e-10, atol=0)


def test_nearly_singular_gives_the_pseudo_inverse():
    g = torch.Generator().manual_seed(1)
    S = torch.randn(8, 3, generator=g, dtype=torch.float64)
    A = S @ S.T + 1e-10 * torch.eye(8, dtype=torch.float64)
    Z = laplace_attn.newton_schulz_inverse(A, iters=6)
    P = torch.linalg.pinv(A, rtol=1e-6)
    assert (Z - P).abs().max() / P.abs().max() < 1e-6


def test_ridge_regularises():
    A = kernel_matrix()
    Z = laplace_attn.newton_schulz_inverse(A, iters=30, ridge=0.5)
    torch.testing.assert_close(Z, torch.linalg.inv(A + 0.5 * torch.eye(16, dtype=A.dtype)))


def test_gradcheck_implicit_backward():
    A = well_conditioned(batch=(2,), m=5).requires_grad_()
    assert gradcheck(lambda a: laplace_attn.newton_schulz_inverse(a, iters=30), (A,))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_low_precision(dtype, tol):
    W = kernel_matrix()
    Z = laplace_attn.newton_schulz_inverse(W.to(dtype), iters=8)
    assert Z.dtype == dtype
    inv = torch.linalg.inv(W)
    assert (Z.double() - inv).abs().max() / inv.abs().max() < tol


def test_opcheck():
    A = well_conditioned(batch=(2,), m=4).requires_grad_()
    torch.library.opcheck(torch.ops.laplace_attn.newton_schulz_inverse.default, (A, 10, 3, 0.0))
    torch.library.opcheck(torch.ops.laplace_attn.newton_schulz_inverse.default,
                          (A.detach().float(), 5, 2, 0.1))


@pytest.mark.parametrize("args,message", [
    ((torch.randn(3, 4),), r"expected A of shape \[..., m, m\]"),
    ((torch.randn(4),), r"expected A of shape \[..., m, m\]"),
    ((torch.randn(3, 3), 6, 4), "expected order 2 or 3"),
    ((torch.randn(3, 3), -1), "expected iters >= 0"),
    ((torch.randn(3, 3), 6, 3, -1.0), "expected ridge >= 0"),
])
def test_bad_inputs(args, message):
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.newton_schulz_inverse(*args)
