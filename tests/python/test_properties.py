"""Property-based tests (hypothesis): every operator over random shapes (sizes 0
and 1 included), dtypes, memory layouts (transposed, sliced, expanded) and values
(NaN, ±inf, huge, tiny) against float64 references written independently of the
kernels. What must hold: no crash; finite inputs give the reference's values to
the dtype's tolerance; a non-finite input makes non-finite exactly the outputs
it reaches and no others. Examples are derandomised, so CI runs the same ones.
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import laplace_attn
from scan_reference import reference_scan

settings.register_profile("laplace_attn", max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("laplace_attn")

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# Relative to the largest reference value; low precision rounds inputs and outputs.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 6e-2, torch.float16: 8e-3}
LAYOUTS = ["contiguous", "transposed", "sliced", "expanded"]
SPECIALS = ["none", "nan", "inf", "-inf", "huge", "tiny"]


def special_value(kind, dtype):
    info = torch.finfo(dtype)
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
            "huge": math.sqrt(info.max) / 16, "tiny": info.tiny}[kind]


def laid_out(x, layout, dim):
    """The values of x in another memory layout: transposed (the same tensor seen
    through a permuted copy), sliced (every other element of a wider tensor along
    dim), or expanded (stride 0 along dim 0, when that size is 1 or 0)."""
    if layout == "transposed" and x.dim() >= 2:
        return x.transpose(0, -1).contiguous().transpose(0, -1)
    if layout == "sliced":
        wide = torch.repeat_interleave(x, 2, dim=dim)
        return wide[(slice(None),) * (dim % x.dim()) + (slice(None, None, 2),)]
    if layout == "expanded" and x.shape[0] == 1:
        return x[:1].expand(*x.shape)
    return x


def relative_error(actual, expected):
    if expected.numel() == 0:
        return 0.0
    scale = expected.abs().max().clamp_min(1e-30)
    return float((actual.double() - expected).abs().max() / scale)


def assert_matches(actual, expected, dtype):
    err = relative_error(actual, expected)
    assert err <= TOL[dtype], f"relative error {err:.3e} > {TOL[dtype]:.1e}"


def assert_nonfinite_exactly(actual, reach):
    got = ~torch.isfinite(actual.double())
    assert torch.equal(got, reach), f"{int(got.sum())} non-finite, expected {int(reach.sum())}"


def plant(x, special, index):
    """x with one entry set to the special value (a copy); the flat index wraps."""
    if special == "none" or x.numel() == 0:
        return x
    x = x.clone()
    x.view(-1)[index % x.numel()] = special_value(special, x.dtype)
    return x


def planted_position(x, index):
    return None if x.numel() == 0 else torch.unravel_index(torch.tensor(index % x.numel()),
                                                           x.shape)


# --- laplace_scan ------------------------------------------------------------------

@given(B=st.integers(0, 2), N=st.integers(0, 40), H=st.integers(1, 2), D=st.integers(1, 9),
       S=st.integers(1, 5), dtype=st.sampled_from(DTYPES), bilateral=st.booleans(),
       gated=st.booleans(), layout=st.sampled_from(LAYOUTS), special=st.sampled_from(SPECIALS),
       index=st.integers(0, 10**6), seed=st.integers(0, 2**16))
def test_laplace_scan(B, N, H, D, S, dtype, bilateral, gated, layout, special, index, seed):
    g = torch.Generator().manual_seed(seed)
    u64 = torch.randn(B, N, H, D, generator=g, dtype=torch.float64)
    decay = 0.01 + torch.rand(H, S, generator=g, dtype=torch.float64)
    freq = 3.0 * torch.rand(H, S, generator=g, dtype=torch.float64) - 1.0
    c_fwd = torch.randn(H, S, D, 2, generator=g, dtype=torch.float64) / S
    c_bwd = torch.randn(H, S, D, 2, generator=g, dtype=torch.float64) / S if bilateral else None
    gate = 0.2 + torch.rand(B, H, S, generator=g, dtype=torch.float64) if gated else None
    u_typed = plant(u64.to(dtype), special, index)
    u64 = u_typed.double()
    u = laid_out(u_typed, layout, dim=3)
    cast = (lambda t: None if t is None else t.to(dtype))
    y, final_fwd, first_bwd = laplace_attn.laplace_scan(u, cast(decay), cast(freq), cast(c_fwd),
                                                        cast(c_bwd), cast(gate))
    assert y.shape == u.shape and y.dtype == dtype
    if special in ("nan", "inf", "-inf") and u.numel():
        b, n, h, d = planted_position(u, index)
        reach = torch.zeros(B, N, H, D, dtype=torch.bool)
        reach[b, (0 if bilateral else n):, h, d] = True
        assert_nonfinite_exactly(y, reach)
        state_reach = torch.zeros(B, H, S, D, 2, dtype=torch.bool)
        state_reach[b, :, :, d][h] = True
        assert (~torch.isfinite(final_fwd.double()))[~state_reach].sum() == 0
        return
    # The reference sees the inputs the kernel saw: rounded to dtype.
    ref = reference_scan(u64.to(dtype).double(), cast(decay).double(), cast(freq).double(),
                         cast(c_fwd).double(), None if c_bwd is None else cast(c_bwd).double(),
                         None if gate is None else cast(gate).double())
    assert_matches(y, ref[0], dtype)
    assert_matches(final_fwd, ref[1], dtype)


# --- laplacian_kernel and laplacian_attention -----------------------------------------

def pairwise_l1(x1, x2):
    return (x1[..., :, None, :] - x2[..., None, :, :]).abs().sum(-1)


@given(B=st.integers(0, 2), H=st.integers(1, 3), N=st.integers(0, 12), M=st.integers(0, 12),
       D=st.integers(1, 9), dtype=st.sampled_from(DTYPES), per_head=st.booleans(),
       layout=st.sampled_from(LAYOUTS), special=st.sampled_from(SPECIALS),
       index=st.integers(0, 10**6), seed=st.integers(0, 2**16))
def test_laplacian_kernel(B, H, N, M, D, dtype, per_head, layout, special, index, seed):
    g = torch.Generator().manual_seed(seed)
    x1 = plant(torch.randn(B, H, N, D, generator=g, dtype=torch.float64).to(dtype), special,
               index)
    x2 = torch.randn(B, H, M, D, generator=g, dtype=torch.float64).to(dtype)
    lam = (0.1 + torch.rand(H if per_head else (), generator=g, dtype=torch.float64)).to(dtype)
    out = laplace_attn.laplacian_kernel(laid_out(x1, layout, 3), laid_out(x2, layout, 3), lam)
    assert out.shape == (B, H, N, M) and out.dtype == dtype
    lam_b = lam.double().reshape(-1, 1, 1) if per_head else lam.double()
    ref = torch.exp(-lam_b * pairwise_l1(x1.double(), x2.double()))
    if special in ("nan",) and x1.numel():
        b, h, i, _ = planted_position(x1, index)
        reach = torch.zeros(B, H, N, M, dtype=torch.bool)
        reach[b, h, i] = True
        assert_nonfinite_exactly(out, reach)
        return
    # ±inf distances give kernel 0 (exp(-inf)); huge ones underflow: both finite.
    assert torch.isfinite(out).all()
    assert_matches(out, ref, dtype)


def attention_reference(q, k, v, lam, bias, causal):
    """softmax over the visible keys of -lam ||q - k||_1 + bias, summed only over
    visible keys (so NaN in an invisible key cannot leak), float64; rows that see
    no key are 0."""
    N, M = q.shape[2], k.shape[2]
    logits = -lam * pairwise_l1(q, k) + bias[:, None, None, :]
    visible = torch.isfinite(bias)[:, None, None, :] | torch.isnan(bias)[:, None, None, :]
    visible = visible.expand(logits.shape).clone()
    if causal:
        visible &= torch.ones(N, M, dtype=torch.bool).tril()
    logits = torch.where(visible, logits, torch.tensor(-math.inf, dtype=torch.float64))
    if M == 0:
        return torch.zeros(*q.shape[:3], v.shape[-1], dtype=torch.float64), visible
    top = logits.amax(-1, keepdim=True)
    weights = torch.where(visible, torch.exp(logits - torch.where(torch.isinf(top), 0.0, top)),
                          0.0)
    terms = torch.where(visible[..., None], weights[..., None] * v[:, :, None], 0.0)
    total = weights.sum(-1, keepdim=True)
    out = terms.sum(-2) / total
    return torch.where(visible.any(-1, keepdim=True), out, 0.0), visible


@given(B=st.integers(1, 2), H=st.integers(1, 3), N=st.integers(0, 12), D=st.integers(1, 7),
       E=st.integers(1, 6), dtype=st.sampled_from(DTYPES), causal=st.booleans(),
       mask=st.sampled_from(["none", "bool", "float"]), layout=st.sampled_from(LAYOUTS),
       special=st.sampled_from(SPECIALS), where=st.sampled_from("qkv"),
       index=st.integers(0, 10**6), seed=st.integers(0, 2**16))
def test_laplacian_attention(B, H, N, D, E, dtype, causal, mask, layout, special, where, index,
                             seed):
    g = torch.Generator().manual_seed(seed)
    t = {"q": torch.randn(B, H, N, D, generator=g, dtype=torch.float64),
         "k": torch.randn(B, H, N, D, generator=g, dtype=torch.float64),
         "v": torch.randn(B, H, N, E, generator=g, dtype=torch.float64)}
    t = {name: x.to(dtype) for name, x in t.items()}
    t[where] = plant(t[where], special, index)
    lam = (0.1 + torch.rand(H, generator=g, dtype=torch.float64)).to(dtype)
    bias = torch.zeros(B, N, dtype=torch.float64)
    key_padding_mask = None
    if mask != "none" and N > 1:
        pad = torch.rand(B, N, generator=g) < 0.3
        bias = bias.masked_fill(pad, -math.inf)
        if mask == "float":
            bias = bias + torch.randn(B, N, generator=g, dtype=torch.float64)
            key_padding_mask = bias.to(dtype)
            bias = key_padding_mask.double()
        else:
            key_padding_mask = pad
    args = [laid_out(t[name], layout, 3) for name in "qkv"]
    out = laplace_attn.laplacian_attention(*args, lam, key_padding_mask, causal)
    assert out.shape == (B, H, N, E) and out.dtype == dtype
    ref, visible = attention_reference(t["q"].double(), t["k"].double(), t["v"].double(),
                                       lam.double()[:, None, None], bias, causal)
    if special in ("nan", "inf", "-inf") and t[where].numel():
        b, h, i, e = planted_position(t[where], index)
        reach = torch.zeros(B, H, N, E, dtype=torch.bool)
        if where == "q":  # its row, wherever it sees a key
            reach[b, h, i] = visible[b, h, i].any()
        elif where == "k":  # every row that sees key i
            reach[b, h] = visible[b, h, :, i][:, None].expand(N, E)
        else:  # feature e of every row that sees value i
            reach[b, h, :, e] = visible[b, h, :, i]
        if where == "k" and special != "nan":
            # An infinite key is infinitely far from every query: weight exactly 0,
            # unless it is the only key a row sees (then 0/0).
            return
        assert_nonfinite_exactly(out, reach)
        return
    assert_matches(out, ref, dtype)


# --- gumbel_node_gate -------------------------------------------------------------

@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3), dtype=st.sampled_from(DTYPES),
       tau=st.floats(0.05, 5.0), hard=st.booleans(), training=st.booleans(),
       special=st.sampled_from(["none", "nan"]), index=st.integers(0, 10**6),
       seed=st.integers(0, 2**16))
def test_gumbel_node_gate(shape, dtype, tau, hard, training, special, index, seed):
    g = torch.Generator().manual_seed(seed)
    logits = plant((2 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype),
                   special, index)
    noise = torch.rand(*shape, generator=g, dtype=torch.float64).clamp(0.01, 0.99).to(dtype)
    out = laplace_attn.gumbel_node_gate(logits, noise if training else None, tau, hard, training)
    assert out.shape == logits.shape and out.dtype == dtype
    z = logits.double()
    if training:
        u = noise.double()
        z = z + torch.log(u) - torch.log1p(-u)
    z = z / tau
    ref = torch.sigmoid(z)
    if special == "nan" and logits.numel():
        reach = torch.isnan(logits)
        assert torch.equal(torch.isnan(out), reach) or hard  # a hard gate of NaN is 0 or 1
        return
    if hard:
        decided = (z.abs() > 1e-2)  # away from the threshold, where rounding could flip it
        assert torch.equal(out.double()[decided], (z > 0).double()[decided])
    else:
        assert_matches(out, ref, dtype)


# --- newton_schulz_inverse --------------------------------------------------------

@given(batch=st.lists(st.integers(1, 3), max_size=2), m=st.integers(0, 12),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       log_scale=st.integers(-25, 25), condition=st.sampled_from([1.0, 10.0, 100.0]),
       special=st.sampled_from(["none", "nan"]), seed=st.integers(0, 2**16))
def test_newton_schulz_inverse(batch, m, dtype, log_scale, condition, special, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, m, m)
    q, _ = torch.linalg.qr(torch.randn(*shape, generator=g, dtype=torch.float64))
    spectrum = torch.logspace(0, -math.log10(condition), m, dtype=torch.float64)
    A64 = (q * spectrum[..., None, :]) @ q.mT * 10.0 ** log_scale
    A = A64.to(dtype)
    if special == "nan" and A.numel():
        A = A.clone()
        A.view(-1, m, m)[0, 0, 0] = math.nan
    Z = laplace_attn.newton_schulz_inverse(A, iters=30)
    assert Z.shape == A.shape and Z.dtype == dtype
    if A.numel() == 0:
        return
    flat_Z, flat_A = Z.reshape(-1, m, m).double(), A.reshape(-1, m, m).double()
    for i in range(flat_A.shape[0]):
        if torch.isnan(flat_A[i]).any():
            assert torch.isnan(flat_Z[i]).all()
            continue
        residual = (flat_Z[i] @ flat_A[i] - torch.eye(m, dtype=torch.float64)).norm()
        assert float(residual) <= (1e-9 if dtype == torch.float64 else 1e-4) * condition


# --- nystrom_attention ------------------------------------------------------------

@given(B=st.integers(1, 3), H=st.integers(1, 2), N=st.integers(0, 30), D=st.integers(1, 6),
       landmarks=st.integers(1, 12), kernel=st.sampled_from(["laplacian", "softmax"]),
       normalization=st.sampled_from(["row", "injective"]), padded=st.booleans(),
       special=st.sampled_from(["none", "nan"]), where=st.sampled_from("qkv"),
       seed=st.integers(0, 2**16))
def test_nystrom_attention(B, H, N, D, landmarks, kernel, normalization, padded, special, where,
                           seed):
    g = torch.Generator().manual_seed(seed)
    t = {name: torch.randn(B, H, N, D, generator=g) for name in "qkv"}
    if special == "nan" and N:
        t[where][0, 0, N // 2, 0] = math.nan
    pad = None
    if padded and N > 1:
        pad = torch.zeros(B, N, dtype=torch.bool)
        pad[:, -1] = True
    out = laplace_attn.nystrom_attention(t["q"], t["k"], t["v"], landmarks, kernel,
                                         torch.tensor(0.5), normalization, 6, pad)
    assert out.shape == (B, H, N, D)
    # Other batch elements never see batch element 0, so stay finite.
    assert torch.isfinite(out[1:]).all()
    if special == "none":
        assert torch.isfinite(out).all()
    elif N and not (pad is not None and N // 2 == N - 1 and where != "q"):
        assert torch.isnan(out[0]).any()
    if landmarks >= N and normalization == "row" and kernel == "laplacian" and special == "none":
        bias = torch.zeros(B, N, dtype=torch.float64)
        if pad is not None:
            bias = bias.masked_fill(pad, -math.inf)
        ref, _ = attention_reference(t["q"].double(), t["k"].double(), t["v"].double(), 0.5,
                                     bias, False)
        assert_matches(out, ref, torch.float32)


# --- laplace_transform --------------------------------------------------------------

@given(B=st.integers(0, 2), N=st.integers(0, 20), H=st.integers(1, 2), P=st.integers(1, 4),
       S=st.integers(1, 3), dtype=st.sampled_from(DTYPES), bilateral=st.booleans(),
       layout=st.sampled_from(LAYOUTS), special=st.sampled_from(SPECIALS),
       index=st.integers(0, 10**6), seed=st.integers(0, 2**16))
def test_laplace_transform(B, N, H, P, S, dtype, bilateral, layout, special, index, seed):
    from test_laplace_transform import reference_transform

    g = torch.Generator().manual_seed(seed)
    u = plant(torch.randn(B, N, H, P, generator=g, dtype=torch.float64).to(dtype), special,
              index)
    decay = 0.02 + torch.rand(H, S, generator=g, dtype=torch.float64)
    freq = 2 * torch.rand(H, S, generator=g, dtype=torch.float64) - 1
    params = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
    out = laplace_attn.laplace_transform(laid_out(u, layout, 3), decay.to(params),
                                         freq.to(params), bilateral)
    assert out.shape == (B, N, H, S, P, 2) and out.dtype == dtype
    if special in ("nan", "inf", "-inf") and u.numel():
        b, n, h, p = planted_position(u, index)
        reach = torch.zeros(out.shape, dtype=torch.bool)
        reach[b, (0 if bilateral else n):, h, :, p] = True
        # A real input's coefficient at its own step is real: its imaginary part
        # there is exactly 0 * x, which is NaN for x = ±inf or NaN as well.
        assert torch.equal(~torch.isfinite(out.double()), reach)
        return
    ref = reference_transform(u.double(), decay.to(params).double(), freq.to(params).double(),
                              bilateral)
    assert_matches(out, ref, dtype)
