"""laplacian_attention against a dense float64 softmax reference: causal,
padded, far-away rows; gradients, opcheck, errors."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device


def reference(q, k, v, lam, pad=None, causal=False):
    """Dense float64: softmax over visible keys of -lam * ||q_i - k_j||_1 (log-domain)."""
    q, k, v, lam = q.double(), k.double(), v.double(), lam.double()
    lam = lam if lam.dim() == 0 else lam[None, :, None, None]
    scores = -lam * torch.cdist(q, k, p=1)
    N, M = q.shape[2], k.shape[2]
    allowed = torch.ones(q.shape[0], 1, N, M, dtype=torch.bool)
    if causal:
        allowed = allowed & torch.ones(N, M, dtype=torch.bool).tril(M - N)  # bottom right
    if pad is not None:
        allowed = allowed & ~pad[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
    return weights @ v


def make(B=2, H=3, N=11, M=11, D=5, E=4, dtype=torch.float64, per_head=True, seed=0,
         requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    ts = [torch.randn(B, H, N, D, generator=g, dtype=torch.float64),
          torch.randn(B, H, M, D, generator=g, dtype=torch.float64),
          torch.randn(B, H, M, E, generator=g, dtype=torch.float64),
          0.1 + torch.rand(H if per_head else (), generator=g, dtype=torch.float64)]
    return [t.to(dtype).requires_grad_(requires_grad) for t in ts]


def padding(B=2, M=11):
    pad = torch.zeros(B, M, dtype=torch.bool)
    pad[1, :3] = True
    pad[0, -2:] = True
    return pad


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("shape", [dict(), dict(N=70, M=70, D=64, E=64), dict(N=5, M=9, D=17),
                                   dict(N=9, M=5, D=3)])
def test_matches_dense_reference(causal, padded, shape, device):
    q, k, v, lam = make(**shape)
    pad = padding(M=k.shape[2]) if padded else None
    out = laplace_attn.laplacian_attention(*to_device((q, k, v, lam, pad), device), causal)
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), reference(q, k, v, lam, pad, causal), rtol=1e-12,
                               atol=1e-12)
    # float32 against the float64 reference of the same (rounded) inputs.
    args32 = [t.float() for t in (q, k, v, lam)]
    out32 = laplace_attn.laplacian_attention(*to_device((*args32, pad), device), causal).cpu()
    torch.testing.assert_close(out32.double(), reference(*args32, pad, causal), rtol=1e-4,
                               atol=5e-5)


def test_causal_aligns_the_queries_with_the_last_keys(device):
    """Decoding: one new query against a cache of M keys sees every key; the last
    N queries of a causal call over M keys equal the last N rows of the full call."""
    q, k, v, lam = to_device(make(N=20, M=20), device)
    full = laplace_attn.laplacian_attention(q, k, v, lam, None, True)
    last = laplace_attn.laplacian_attention(q[:, :, -1:], k, v, lam, None, True)
    torch.testing.assert_close(last, laplace_attn.laplacian_attention(q[:, :, -1:], k, v, lam))
    tail = laplace_attn.laplacian_attention(q[:, :, -6:], k, v, lam, None, True)
    torch.testing.assert_close(tail, full[:, :, -6:], rtol=1e-12, atol=1e-12)


def test_rows_far_from_every_key_do_not_underflow():
    q, k, v, lam = make(D=8)
    q = q + 500.0  # every kernel value is exp(-lam * ~4000): 0 in any float format
    lam = torch.full_like(lam, 2.0)
    naive = torch.exp(-lam[None, :, None, None] * torch.cdist(q, k, p=1))
    assert torch.equal(naive, torch.zeros_like(naive))  # what an unscaled kernel would divide
    out = laplace_attn.laplacian_attention(q, k, v, lam)
    torch.testing.assert_close(out, reference(q, k, v, lam), rtol=1e-9, atol=1e-9)
    out32 = laplace_attn.laplacian_attention(q.float(), k.float(), v.float(), lam.float())
    assert torch.isfinite(out32).all()
    # float32 distances near 4000 carry ~1e-4 absolute error, amplified by lam = 2.
    torch.testing.assert_close(out32.double(), reference(q, k, v, lam), rtol=0, atol=2e-2)


def test_padding_edge_cases_never_give_nan():
    q, k, v, lam = make(requires_grad=True)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, 4] = False  # all but one key padded
    # batch 1: every key padded -> rows return zeros
    out = laplace_attn.laplacian_attention(q, k, v, lam, pad, False)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], v[0, :, 4:5].expand(3, 11, 4))
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v, lam))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("per_head", [False, True])
def test_gradcheck(causal, per_head, device):
    args = make(B=2, H=2, N=5, M=5, D=3, E=2, per_head=per_head, requires_grad=True)
    pad = torch.zeros(2, 5, dtype=torch.bool, device=device)
    pad[1, 0] = True
    assert gradcheck(lambda *a: laplace_attn.laplacian_attention(*a, pad, causal),
                     tuple(to_device(args, device)))


def test_gradients_match_reference_at_size(device):
    args = make(N=40, M=40, D=32, E=16, requires_grad=True)
    pad = padding(M=40)
    w = torch.randn(2, 3, 40, 16, dtype=torch.float64)
    on_device = to_device(args, device)
    out = laplace_attn.laplacian_attention(*on_device, pad.to(device), True)
    grads = torch.autograd.grad((out * w.to(device)).sum(), on_device)
    ref = torch.autograd.grad((reference(*args, pad, True) * w).sum(), args)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g.cpu(), r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("N", [1, 7, 8])
def test_few_queries_against_a_long_key_cache(N, dtype, tol):
    """Decoding shapes: fewer queries than kLaplacianTransposeMinQueries read the keys
    row by row, a row per thread; 8 or more read them transposed."""
    q, k, v, lam = make(B=1, H=2, N=N, M=3000, D=64, E=32)
    pad = torch.zeros(1, 3000, dtype=torch.bool)
    pad[0, :100] = True
    args = [t.to(dtype) for t in (q, k, v, lam)]
    out = laplace_attn.laplacian_attention(*args, pad, True)
    want = reference(*args, pad, True)
    err = (out.double() - want).abs().max().item()
    assert err <= tol, err


@pytest.mark.parametrize("N", [1, 12])
def test_keys_read_in_place_from_a_longer_cache(N, device):
    """k and v as the first M rows of a preallocated [B, H, L, D] cache (strided heads)
    give what contiguous copies give, forward and backward."""
    q, k_all, v_all, lam = make(N=N, M=40, D=16, E=8, requires_grad=False)
    q = q.requires_grad_()
    k_all, v_all = k_all.requires_grad_(), v_all.requires_grad_()
    k, v = k_all[:, :, :30], v_all[:, :, :30]
    assert not k.is_contiguous()
    pad = padding(M=30)
    args = to_device((q, k, v, lam, pad), device)
    out = laplace_attn.laplacian_attention(*args, True)
    copies = [t.detach().contiguous().requires_grad_() for t in args[:3]]
    want = laplace_attn.laplacian_attention(*copies, args[3], pad.to(out.device), True)
    assert torch.equal(out, want)
    grads = torch.autograd.grad(out.square().sum(), args[:3])
    want_grads = torch.autograd.grad(want.square().sum(), copies)
    for g, w in zip(grads, want_grads):
        assert torch.equal(g, w)


def test_results_do_not_depend_on_thread_count():
    args = make(N=50, M=50, D=16, E=8, dtype=torch.float32, requires_grad=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = laplace_attn.laplacian_attention(*args, None, True)
            results.append([out, *torch.autograd.grad(out.square().sum(), args)])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_bfloat16_within_tolerance():
    q, k, v, lam = make(N=30, M=30, D=16, E=8)
    out = laplace_attn.laplacian_attention(*(t.bfloat16() for t in (q, k, v, lam)))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), reference(q, k, v, lam), rtol=3e-2, atol=3e-2)


def test_opcheck():
    args = make(B=1, H=2, N=4, M=4, D=3, E=2, requires_grad=True)
    pad = torch.zeros(1, 4, dtype=torch.bool)
    pad[0, 1] = True
    for a in [(*args, None, False), (*args, pad, True)]:
        torch.library.opcheck(torch.ops.laplace_attn.laplacian_attention.default, a)


def test_compile_fullgraph_matches_eager():
    args = make(N=12, M=12, D=8, E=8, dtype=torch.float32, requires_grad=True)
    fn = lambda *a: laplace_attn.laplacian_attention(*a, None, True).square().sum()  # noqa: E731
    eager = fn(*args)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")(*args)
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(torch.autograd.grad(compiled, args), torch.autograd.grad(eager, args)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("change,message", [
    (lambda a: (a[0][0], *a[1:]), r"expected q of shape \[B, H, N, D\]"),
    (lambda a: (a[0], a[1][..., :2], *a[2:]), r"expected k of shape \[B, H, M, D\]"),
    (lambda a: (a[0], a[1], a[2][:, :, :3], a[3]), r"expected v of shape \[B, H, M, E\]"),
    (lambda a: (*a[:3], -a[3]), r"expected inv_lambda \(1 / bandwidth\) finite and >= 0"),
    (lambda a: (*a[:3], torch.rand(7, dtype=torch.float64)), "expected inv_lambda to be"),
    (lambda a: (*a, torch.zeros(2, 11, dtype=torch.int32)), "expected key_padding_mask of dtype bool"),
    (lambda a: (*a, torch.zeros(2, 5, dtype=torch.bool)), r"expected key_padding_mask of shape"),
    (lambda a: (a[0], a[1].float(), *a[2:]), "expected k of dtype"),
])
def test_bad_inputs(change, message):
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.laplacian_attention(*change(make()))
