"""laplace_transform against coefficients built directly from powers of the poles."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device


def reference_transform(u, decay, freq, bilateral, state_fwd=None, state_bwd=None):
    u = u.double()
    B, N, H, P = u.shape
    log_a = torch.complex(-decay.double(), -freq.double())  # [H, S]
    n = torch.arange(N, dtype=torch.float64)
    lag = n[:, None] - n[None, :]

    def pw(t):  # a^t for exponents t [N, N] -> [H, S, N, N]
        return torch.exp(t.to(torch.complex128)[None, None] * log_a[..., None, None])

    uc = u.to(torch.complex128)
    # L[b, n, h, s, p] = sum_{m <= n} a^(n-m) u_m (+ sum_{m > n} a^(m-n) u_m)
    kern = pw(lag.clamp(min=0)) * (lag >= 0)
    if bilateral:
        kern = kern + pw((-lag).clamp(min=0)) * (lag < 0)
    L = torch.einsum("hsnm,bmhp->bnhsp", kern, uc)
    # Initial states enter as a^(n+1) state_fwd and a^(N-n) state_bwd.
    for state, exponent in ((state_fwd, n + 1), (state_bwd, N - n)):
        if state is not None:
            s0 = torch.complex(state[..., 0].double(), state[..., 1].double())
            powers = torch.exp(exponent.to(torch.complex128)[None, None] * log_a[..., None])
            L = L + torch.einsum("hsn,bhsp->bnhsp", powers, s0)
    return torch.stack([L.real, L.imag], dim=-1)


def make(B=2, N=23, H=2, S=3, P=2, states=False, bilateral=True, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    t = dict(u=torch.randn(B, N, H, P, generator=g, dtype=torch.float64),
             decay=0.05 + 0.5 * torch.rand(H, S, generator=g, dtype=torch.float64),
             freq=torch.rand(H, S, generator=g, dtype=torch.float64) * 2 - 1,
             state_fwd=torch.randn(B, H, S, P, 2, generator=g, dtype=torch.float64)
             if states else None,
             state_bwd=torch.randn(B, H, S, P, 2, generator=g, dtype=torch.float64)
             if states and bilateral else None)
    return {k: (v.requires_grad_(requires_grad) if v is not None else None) for k, v in t.items()}


@pytest.mark.parametrize("bilateral", [False, True])
@pytest.mark.parametrize("states", [False, True])
def test_matches_reference(bilateral, states, device):
    a = make(states=states, bilateral=bilateral)
    d = to_device(a, device)
    out = laplace_attn.laplace_transform(d["u"], d["decay"], d["freq"], bilateral,
                                         d["state_fwd"], d["state_bwd"]).cpu()
    assert out.shape == (2, 23, 2, 3, 2, 2)
    ref = reference_transform(a["u"], a["decay"], a["freq"], bilateral, a["state_fwd"],
                              a["state_bwd"])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize("bilateral", [False, True])
def test_low_precision_u_with_float32_poles_and_states(dtype, tol, bilateral):
    # The precision policy: 16-bit u, float32 decay/freq/states; the result is in
    # u's dtype, rounded once (tolerance relative to the largest coefficient).
    a = make(states=True, bilateral=bilateral)
    u = a["u"].to(dtype)
    f32 = {k: (None if a[k] is None else a[k].float()) for k in ("decay", "freq", "state_fwd",
                                                                 "state_bwd")}
    out = laplace_attn.laplace_transform(u, f32["decay"], f32["freq"], bilateral,
                                         f32["state_fwd"], f32["state_bwd"])
    assert out.dtype == dtype
    ref = reference_transform(u.double(), f32["decay"].double(), f32["freq"].double(), bilateral,
                              *(None if t is None else t.double()
                                for t in (f32["state_fwd"], f32["state_bwd"])))
    err = float((out.double() - ref).abs().max() / ref.abs().max())
    assert err <= tol, err


@pytest.mark.parametrize("bilateral", [False, True])
def test_gradcheck(bilateral, device):
    a = to_device(make(B=1, N=7, H=2, S=2, P=2, states=True, bilateral=bilateral,
                       requires_grad=True), device)
    names = [k for k, v in a.items() if v is not None]

    def fn(*xs):
        kw = dict(zip(names, xs))
        return laplace_attn.laplace_transform(kw["u"], kw["decay"], kw["freq"], bilateral,
                                              kw.get("state_fwd"), kw.get("state_bwd"))

    assert gradcheck(fn, tuple(a[k] for k in names))


def test_opcheck():
    a = make(B=1, N=6, H=2, S=2, P=1, states=True, requires_grad=True)
    torch.library.opcheck(torch.ops.laplace_attn.laplace_transform.default,
                          (a["u"], a["decay"], a["freq"], True, a["state_fwd"], a["state_bwd"]))


@pytest.mark.parametrize("change,message", [
    (dict(u=torch.randn(3, 4, 2)), r"expected u of shape \[B, N, H, P\]"),
    (dict(decay=torch.rand(3, 3, dtype=torch.float64)), "expected decay of shape"),
    (dict(freq=torch.rand(2, 4, dtype=torch.float64)), "expected freq of shape"),
    (dict(state_fwd=torch.randn(2, 2, 3, 2, dtype=torch.float64)), "expected state_fwd of shape"),
])
def test_bad_inputs(change, message):
    a = {**make(), **change}
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.laplace_transform(a["u"], a["decay"], a["freq"], True, a["state_fwd"], None)
