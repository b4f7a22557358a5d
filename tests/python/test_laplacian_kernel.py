"""laplacian_kernel against torch.cdist(p=1) in float64, gradients, opcheck, errors."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device


def reference(x1, x2, inv_lambda):
    lam = inv_lambda.double()
    lam = lam if lam.dim() == 0 else lam[None, :, None, None]
    return torch.exp(-lam * torch.cdist(x1.double(), x2.double(), p=1))


def make(B=2, H=3, N=9, M=7, D=5, dtype=torch.float64, per_head=True, seed=0,
         requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
    x2 = torch.randn(B, H, M, D, generator=g, dtype=torch.float64)
    lam = (0.05 + torch.rand(H if per_head else (), generator=g, dtype=torch.float64)) / D
    return [t.to(dtype).requires_grad_(requires_grad) for t in (x1, x2, lam)]


# Shapes across the kernels' edges: D not a multiple of the vector width, more
# columns than one register tile, rows not a multiple of the row block.
SHAPES = [dict(), dict(N=33, M=70, D=64), dict(B=1, H=1, N=5, M=40, D=17), dict(N=1, M=1, D=1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_head", [False, True])
def test_matches_cdist_reference(shape, per_head, device):
    x1, x2, lam = make(**shape, per_head=per_head)
    out = laplace_attn.laplacian_kernel(*to_device((x1, x2, lam), device))
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), reference(x1, x2, lam), rtol=1e-12, atol=1e-14)
    x1, x2, lam = make(**shape, per_head=per_head, dtype=torch.float32)
    out = laplace_attn.laplacian_kernel(*to_device((x1, x2, lam), device)).cpu()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference(x1, x2, lam), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(dtype, device):
    x1, x2, lam = make(N=20, M=30, D=32, dtype=dtype)
    out = laplace_attn.laplacian_kernel(*to_device((x1, x2, lam), device)).cpu()
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(x1, x2, lam), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("per_head", [False, True])
def test_gradcheck(per_head, device):
    args = make(B=2, H=2, N=5, M=4, D=3, per_head=per_head, requires_grad=True)
    assert gradcheck(laplace_attn.laplacian_kernel, tuple(to_device(args, device)))


def test_gradients_match_reference_at_size(device):
    x1, x2, lam = make(N=40, M=50, D=64, requires_grad=True)
    w = torch.randn(2, 3, 40, 50, dtype=torch.float64)
    on_device = to_device((x1, x2, lam), device)
    grads = torch.autograd.grad((laplace_attn.laplacian_kernel(*on_device) * w.to(device)).sum(),
                                on_device)
    ref = torch.autograd.grad((reference(x1, x2, lam) * w).sum(), (x1, x2, lam))
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g.cpu(), r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("simd", ["avx2", "baseline"])
def test_other_simd_levels(simd):
    try:
        laplace_attn.set_cpu_simd(simd)
    except RuntimeError:
        pytest.skip(f"{simd} not available here")
    try:
        x1, x2, lam = make(N=13, M=45, D=21, dtype=torch.float32, requires_grad=True)
        out = laplace_attn.laplacian_kernel(x1, x2, lam)
        torch.testing.assert_close(out.double(), reference(x1, x2, lam), rtol=1e-5, atol=1e-7)
        g = torch.autograd.grad(out.sum(), x1)[0]
        r = torch.autograd.grad(reference(x1, x2, lam).sum(), x1)[0]
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    finally:
        laplace_attn.set_cpu_simd("auto")


def test_results_do_not_depend_on_thread_count():
    x1, x2, lam = make(N=60, M=50, D=24, dtype=torch.float32, requires_grad=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = laplace_attn.laplacian_kernel(x1, x2, lam)
            results.append([out, *torch.autograd.grad(out.square().sum(), (x1, x2, lam))])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_opcheck():
    for per_head in (False, True):
        args = make(B=1, H=2, N=4, M=3, D=5, per_head=per_head, requires_grad=True)
        torch.library.opcheck(torch.ops.laplace_attn.laplacian_kernel.default, tuple(args))
    torch.library.opcheck(torch.ops.laplace_attn.laplacian_kernel.default,
                          tuple(make(dtype=torch.float32)))


@pytest.mark.parametrize("change,message", [
    (lambda a: [a[0][0], a[1], a[2]], r"expected x1 of shape \[B, H, N, D\]"),
    (lambda a: [a[0], a[1][..., :2], a[2]], r"expected x2 of shape \[B, H, M, D\]"),
    (lambda a: [a[0], a[1], torch.rand(5, dtype=torch.float64)], "expected inv_lambda to be"),
    (lambda a: [a[0], a[1], -a[2]], r"expected inv_lambda \(1 / bandwidth\) finite and >= 0"),
    (lambda a: [a[0], a[1].float(), a[2]], "expected x2 of dtype"),
    (lambda a: [a[0].long(), a[1], a[2]], "expected x1 of dtype float32"),
])
def test_bad_inputs(change, message):
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.laplacian_kernel(*change(make()))
