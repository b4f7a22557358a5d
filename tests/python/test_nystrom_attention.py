"""nystrom_attention: exact when m >= N, converges as m grows on real-text
queries, the softmax mode against an independent Nystromformer reference,
padding without NaN, gradients."""
import json
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device


def nystromformer_reference(q, k, v, m, iters=6):
    """Nystromformer (softmax kernel, row normalisation, order-3 Newton-Schulz with
    its global initial scaling), written independently, for N divisible by m."""
    B, H, N, D = q.shape
    scale = D ** -0.5
    q_l = q.reshape(B, H, m, N // m, D).mean(-2)
    k_l = k.reshape(B, H, m, N // m, D).mean(-2)
    k1 = torch.softmax(q @ k_l.mT * scale, -1)
    k2 = torch.softmax(q_l @ k_l.mT * scale, -1)
    k3 = torch.softmax(q_l @ k.mT * scale, -1)
    eye = torch.eye(m, dtype=q.dtype)
    z = k2.mT / (k2.abs().sum(-2).amax(-1) * k2.abs().sum(-1).amax(-1))[..., None, None]
    for _ in range(iters):
        kz = k2 @ z
        z = 0.25 * z @ (13 * eye - kz @ (15 * eye - kz @ (7 * eye - kz)))
    return k1 @ (z @ (k3 @ v))


def make(B=2, H=2, N=48, D=8, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    ts = [torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3)]
    return [t.requires_grad_(requires_grad) for t in ts]


def text_embeddings(N=256, D=16, seed=0):
    """Queries and keys from real text: characters of a Python standard library
    source file, each embedded by a fixed random projection of its character and
    its predecessor, so similar contexts get similar vectors."""
    text = Path(json.__file__).with_name("decoder.py").read_text()[:N + 1]
    codes = torch.tensor([min(ord(c), 127) for c in text])
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(128, D, generator=g, dtype=torch.float64)
    x = table[codes[1:]] + 0.5 * table[codes[:-1]]
    proj = torch.randn(2, D, D, generator=g, dtype=torch.float64) / D ** 0.5
    return (x @ proj[0])[None, None], (x @ proj[1])[None, None], x[None, None]


@pytest.mark.parametrize("kernel", ["laplacian", "softmax"])
def test_exact_when_landmarks_cover_every_token(kernel, device):
    q, k, v = make(N=37)
    lam = torch.tensor(0.3, dtype=torch.float64)
    exact = (laplace_attn.laplacian_attention(q, k, v, lam) if kernel == "laplacian"
             else torch.softmax(q @ k.mT / 8 ** 0.5, -1) @ v)
    out = laplace_attn.nystrom_attention(*to_device((q, k, v), device), 37, kernel, lam.to(device))
    torch.testing.assert_close(out.cpu(), exact)


def test_error_falls_as_landmarks_grow_on_real_text():
    q, k, v = text_embeddings()
    lam = torch.tensor(0.15, dtype=torch.float64)
    exact = laplace_attn.laplacian_attention(q, k, v, lam)
    errors = [float((laplace_attn.nystrom_attention(q, k, v, m, "laplacian", lam) - exact).norm()
                    / exact.norm()) for m in (8, 32, 128)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.5 * errors[0]


def test_softmax_mode_is_nystromformer():
    q, k, v = make(N=48)
    out = laplace_attn.nystrom_attention(q, k, v, 8, "softmax")
    # The reference scales Z0 by the batch-global maximum, as Nystromformer does; ours
    # scales each matrix on its own. Both converge to the same inverse.
    torch.testing.assert_close(out, nystromformer_reference(q, k, v, 8, iters=6), rtol=1e-3,
                               atol=1e-3)
    torch.testing.assert_close(laplace_attn.nystrom_attention(q, k, v, 8, "softmax", iters=30),
                               nystromformer_reference(q, k, v, 8, iters=30))


@pytest.mark.parametrize("normalization", ["row", "injective"])
@pytest.mark.parametrize("kernel", ["laplacian", "softmax"])
def test_padding_never_gives_nan(normalization, kernel):
    q, k, v = make(N=40, requires_grad=True)
    lam = torch.tensor(0.5, dtype=torch.float64)
    pad = torch.zeros(2, 40, dtype=torch.bool)
    pad[0, 1:] = True     # all but one key padded
    pad[1, 10:20] = True  # a fully padded landmark segment (m = 4: segments of 10)
    out = laplace_attn.nystrom_attention(q, k, v, 4, kernel, lam, normalization, 6, pad)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # Padded keys influence nothing.
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, 10:20] += 100.0
    v2[1, :, 10:20] -= 100.0
    out2 = laplace_attn.nystrom_attention(q.detach(), k2, v2, 4, kernel, lam, normalization, 6,
                                          pad)
    torch.testing.assert_close(out2[1], out.detach()[1])


def test_gradcheck(device):
    # The inverse's gradient is the implicit one, exact once the iteration has
    # converged: 40 steps here.
    q, k, v = to_device(make(B=1, H=1, N=12, D=3, requires_grad=True), device)
    lam = torch.tensor(0.4, dtype=torch.float64, requires_grad=True, device=device)
    assert gradcheck(lambda *a: laplace_attn.nystrom_attention(a[0], a[1], a[2], 3, "laplacian",
                                                               a[3], "row", 40), (q, k, v, lam))


@pytest.mark.parametrize("kwargs,message", [
    (dict(kernel="gauss"), 'expected kernel "laplacian" or "softmax"'),
    (dict(normalization="l2"), 'expected normalization "row" or "injective"'),
    (dict(num_landmarks=0), "expected num_landmarks > 0"),
    (dict(inv_lambda=None), "the laplacian kernel needs inv_lambda"),
    (dict(key_padding_mask=torch.zeros(2, 7, dtype=torch.bool)),
     r"expected key_padding_mask of dtype bool and shape \[B, N\]"),
])
def test_bad_inputs(kwargs, message):
    q, k, v = make()
    args = dict(num_landmarks=4, kernel="laplacian", inv_lambda=torch.tensor(0.3,
                dtype=torch.float64), normalization="row", iters=6, key_padding_mask=None)
    args.update(kwargs)
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.nystrom_attention(q, k, v, **args)
