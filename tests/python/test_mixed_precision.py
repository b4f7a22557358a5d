"""Mixed precision (docs/ops.md, "Precision"): bfloat16/float16 activations with
float32 parameters and states, in and outside autocast; gradients in each input's
dtype; no host synchronisation in any forward or backward; double backward is a
clear error. References are float64, computed from the inputs as the kernels saw
them (rounded to the activation dtype)."""
import contextlib
import math

import pytest
import torch
from torch import nn
from torch.profiler import profile

import laplace_attn
from conftest import to_device
from scan_reference import make_inputs, reference_scan

LOW = [torch.bfloat16, torch.float16]
# Max error relative to the largest reference value: the output is rounded once
# to the activation dtype (2^-8 for bfloat16, 2^-11 for float16), plus float32 sums.
TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


def rel_err(actual, expected):
    scale = expected.abs().max().clamp_min(1e-30)
    return float((actual.double() - expected.double()).abs().max() / scale)


def scan_inputs(dtype, N=64, **kw):
    """Activations in dtype, parameters and states in float32, leaves."""
    args = make_inputs(B=2, N=N, H=2, D=5, S=4, gate=True, states=True, **kw)
    out = {}
    for name, t in args.items():
        if t is not None:
            t = t.to(dtype if name == "u" else torch.float32)
            out[name] = t.detach().requires_grad_()
        else:
            out[name] = None
    return out


@pytest.mark.parametrize("dtype", LOW)
def test_laplace_scan_low_precision_activations_float32_parameters(dtype):
    args = scan_inputs(dtype)
    y, final_fwd, first_bwd = laplace_attn.laplace_scan(**args)
    assert y.dtype == dtype
    assert final_fwd.dtype == first_bwd.dtype == torch.float32  # states stay float32
    ref_args = {k: (v.detach().double().requires_grad_() if v is not None else None)
                for k, v in args.items()}
    ref = reference_scan(**ref_args)
    assert rel_err(y, ref[0]) <= TOL[dtype]
    assert rel_err(final_fwd, ref[1]) <= 1e-5 and rel_err(first_bwd, ref[2]) <= 1e-5
    # Gradients: each in its input's dtype, against the reference's.
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in ref]
    loss = sum((o.double() * w).sum() for o, w in zip((y, final_fwd, first_bwd), weights))
    loss_ref = sum((o * w).sum() for o, w in zip(ref, weights))
    names = [k for k, v in args.items() if v is not None]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    grads_ref = torch.autograd.grad(loss_ref, [ref_args[k] for k in names])
    for name, grad, grad_ref in zip(names, grads, grads_ref):
        assert grad.dtype == args[name].dtype, name
        # grad_y reaches the kernel rounded to dtype, so every gradient carries that rounding.
        assert rel_err(grad, grad_ref) <= 3 * TOL[dtype], name


@pytest.mark.parametrize("dtype", LOW)
def test_laplace_scan_at_131072_steps_keeps_float32_state(dtype):
    args = make_inputs(B=1, N=131072, H=2, D=16, S=8, gate=True, dtype=torch.float64,
                       decay_range=(1e-3, 0.2))
    low = {k: (None if v is None else v.to(dtype if k == "u" else torch.float32))
           for k, v in args.items()}
    y, final_fwd, _ = laplace_attn.laplace_scan(**low)
    exact = dict(args, u=low["u"].double())  # the reference sees the rounded input
    y64, final64, _ = laplace_attn.laplace_scan(**exact)
    assert final_fwd.dtype == torch.float32
    assert rel_err(y, y64) <= TOL[dtype]          # the output's own rounding
    assert rel_err(final_fwd, final64) <= 1e-4    # float32 state: no rounding to dtype


@pytest.mark.parametrize("dtype", LOW)
def test_laplacian_ops_low_precision_activations_float32_bandwidth(dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 24, 8).to(dtype).requires_grad_() for _ in range(3))
    lam = torch.tensor([0.3, 0.6], requires_grad=True)
    mask = torch.randn(2, 24)
    out = laplace_attn.laplacian_attention(q, k, v, lam, mask, True)
    assert out.dtype == dtype
    q64, k64, v64, lam64 = (t.detach().double().requires_grad_() for t in (q, k, v, lam))
    dist = (q64[..., :, None, :] - k64[..., None, :, :]).abs().sum(-1)
    logits = -lam64[:, None, None] * dist + mask.double()[:, None, None, :]
    logits = logits.masked_fill(torch.ones(24, 24, dtype=torch.bool).triu(1), -math.inf)
    ref = torch.softmax(logits, -1) @ v64
    assert rel_err(out, ref) <= TOL[dtype]
    w = torch.randn(ref.shape, dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * w).sum(), (q, k, v, lam))
    grads_ref = torch.autograd.grad((ref * w).sum(), (q64, k64, v64, lam64))
    for grad, grad_ref, t in zip(grads, grads_ref, (q, k, v, lam)):
        assert grad.dtype == t.dtype
        assert rel_err(grad, grad_ref) <= 3 * TOL[dtype]
    kernel = laplace_attn.laplacian_kernel(q, k, lam)
    assert kernel.dtype == dtype
    assert rel_err(kernel, torch.exp(-lam64[:, None, None] * dist)) <= TOL[dtype]
    nystrom = laplace_attn.nystrom_attention(q, k, v, 6, "laplacian", lam, "row")
    assert nystrom.dtype == dtype and torch.isfinite(nystrom).all()


def test_float64_stays_float64_and_float32_parameters_need_low_precision_activations():
    args = make_inputs(B=1, N=8, H=2, D=3, S=2)
    y, final_fwd, _ = laplace_attn.laplace_scan(**args)
    assert y.dtype == final_fwd.dtype == torch.float64
    with pytest.raises(RuntimeError, match="expected decay of dtype Double"):
        laplace_attn.laplace_scan(**dict(args, decay=args["decay"].float()))
    u32 = args["u"].float()
    with pytest.raises(RuntimeError, match="expected c_fwd of dtype Float"):
        laplace_attn.laplace_scan(u32, args["decay"].float(), args["freq"].float(),
                                  args["c_fwd"].bfloat16())


@pytest.mark.parametrize("dtype", LOW)
def test_opcheck_on_mixed_dtype_signatures(dtype):
    args = scan_inputs(dtype, N=9)
    torch.library.opcheck(torch.ops.laplace_attn.laplace_scan,
                          tuple(args[k] for k in ("u", "decay", "freq", "c_fwd", "c_bwd", "gate",
                                                  "state_fwd", "state_bwd")))
    q, k, v = (torch.randn(1, 2, 7, 4).to(dtype).requires_grad_() for _ in range(3))
    lam = torch.tensor([0.5, 1.0], requires_grad=True)
    torch.library.opcheck(torch.ops.laplace_attn.laplacian_kernel, (q, k, lam))
    torch.library.opcheck(torch.ops.laplace_attn.laplacian_attention, (q, k, v, lam, None, True))


# --- autocast: a whole training step ------------------------------------------------

MODULES = [
    ("stlt", dict(mixer="plain")),
    ("stlt", dict(mixer="gated")),
    ("stlt", dict(mixer="multiplicative")),
    ("stlt", dict(mixer="linear", short_conv=4)),
    ("stlt", dict(adaptive=True)),
    ("stlt", dict(adaptive=True, causal=True)),
    ("stlt", dict(mode="relevance")),
    ("laplacian", dict(exact=True)),
    ("laplacian", dict(num_landmarks=8)),
]


def encoder(kind, options):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    laplace_attn.swap_attention(model, kind=kind, **options)
    return model


def training_step(model, autocast, device):
    torch.manual_seed(1)
    x, target = torch.randn(4, 48, 32).to(device), torch.randn(4, 48, 32).to(device)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = (model(x) - target).square().mean()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    opt.step()
    return float(loss), grads


@pytest.mark.parametrize("kind,options", MODULES, ids=lambda v: str(v))
def test_training_step_under_bfloat16_autocast(kind, options, device):
    loss_bf16, grads_bf16 = training_step(encoder(kind, options), True, device)
    loss_f32, grads_f32 = training_step(encoder(kind, options), False, device)
    assert math.isfinite(loss_bf16) and all(torch.isfinite(g).all() for g in grads_bf16)
    # bfloat16 activations (8 bits of mantissa) through two layers: within 1% of float32.
    assert abs(loss_bf16 - loss_f32) <= 1e-2 * abs(loss_f32)
    assert len(grads_bf16) == len(grads_f32)


def test_autocast_keeps_parameters_and_states_in_float32():
    args = scan_inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, final_fwd, _ = laplace_attn.laplace_scan(**args)
        out = laplace_attn.laplacian_attention(*(torch.randn(1, 2, 5, 3) for _ in range(3)),
                                               torch.tensor(0.5))
        gate = laplace_attn.gumbel_node_gate(torch.zeros(2, 3, dtype=torch.bfloat16), None,
                                             1.0, False, False)
        inverse = laplace_attn.newton_schulz_inverse(torch.eye(3, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and final_fwd.dtype == torch.float32
    assert out.dtype == torch.bfloat16
    assert gate.dtype == inverse.dtype == torch.float32
    y.float().sum().backward()
    assert args["decay"].grad.dtype == torch.float32 and args["u"].grad.dtype == torch.float32


# --- no host synchronisation ----------------------------------------------------------

def op_calls(device="cpu"):
    """Each operator's forward, as a function of fresh leaves on device."""
    scan = to_device(scan_inputs(torch.float32, N=12), device)
    q, k, v = (torch.randn(1, 2, 10, 4, device=device, requires_grad=True) for _ in range(3))
    lam = torch.tensor([0.5, 1.0], device=device, requires_grad=True)
    logits = torch.randn(2, 2, 3, device=device, requires_grad=True)
    A = (torch.eye(4) * 2 + 0.1 * torch.randn(4, 4)).to(device).requires_grad_()
    mask = torch.zeros(1, 10, dtype=torch.bool, device=device)
    return {
        "laplace_scan": lambda: laplace_attn.laplace_scan(**scan)[0],
        "laplace_transform": lambda: laplace_attn.laplace_transform(
            scan["u"], scan["decay"], scan["freq"]),
        "gumbel_node_gate": lambda: laplace_attn.gumbel_node_gate(
            logits, torch.rand(2, 2, 3, device=device), 0.7, True, True),
        "laplacian_kernel": lambda: laplace_attn.laplacian_kernel(q, k, lam),
        "newton_schulz_inverse": lambda: laplace_attn.newton_schulz_inverse(A),
        "laplacian_attention": lambda: laplace_attn.laplacian_attention(q, k, v, lam, mask, True),
        "nystrom_attention": lambda: laplace_attn.nystrom_attention(q, k, v, 4, "laplacian", lam,
                                                                    "injective", 6, mask),
    }


@pytest.mark.parametrize("name", list(op_calls()))
def test_forward_and_backward_never_read_a_scalar_on_the_host(name, device):
    call = op_calls(device)[name]
    with profile() as prof:
        out = call()
        out.sum().backward()
    # What .item() dispatches, seen by the profiler also when C++ calls it.
    synced = [e.name for e in prof.events() if e.name in ("aten::_local_scalar_dense",
                                                          "aten::item")]
    assert not synced, f"{name}: {synced}"


@pytest.mark.parametrize("name", list(op_calls()))
def test_double_backward_is_a_clear_error(name):
    out = op_calls()[name]()
    leaves = [t for t in _leaves(out) if t.requires_grad]
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        grads = torch.autograd.grad(out.sum(), leaves, create_graph=True, allow_unused=True)
        # An op whose first backward is itself differentiable composite code fails here.
        torch.autograd.grad(sum(g.sum() for g in grads if g is not None), leaves,
                            allow_unused=True)


def _leaves(out):
    seen, stack, leaves = set(), [out.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            leaves.append(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return leaves


@contextlib.contextmanager
def simd_level(simd):
    """Runs the block with the CPU kernels of `simd` (skips where the CPU lacks it)."""
    available = laplace_attn.build_info()["simd"]
    try:
        laplace_attn.set_cpu_simd(simd)
    except RuntimeError:
        pytest.skip(f"{simd} not available on this CPU (running {available})")
    try:
        yield
    finally:
        laplace_attn.set_cpu_simd("auto")


@pytest.mark.parametrize("simd", ["avx512_bf16", "avx512", "avx2", "baseline"])
@pytest.mark.parametrize("dtype", LOW)
def test_16_bit_activations_read_in_place_at_every_simd_level(simd, dtype):
    # Full SIMD vectors (D = 32) use the hardware conversions where the level has
    # them (F16C); D = 21 leaves a partial vector, converted lane by lane.
    with simd_level(simd):
        for D in (32, 21):
            args = make_inputs(B=1, N=300, H=2, D=D, S=5, gate=True, states=True)
            low = {k: (None if v is None else v.to(dtype if k == "u" else torch.float32))
                   for k, v in args.items()}
            u = low["u"].requires_grad_()
            y, final_fwd, first_bwd = laplace_attn.laplace_scan(**dict(low, u=u))
            ref = reference_scan(**dict(args, u=u.detach().double()))
            assert rel_err(y, ref[0]) <= TOL[dtype], D
            assert rel_err(final_fwd, ref[1]) <= 1e-5 and rel_err(first_bwd, ref[2]) <= 1e-5
            (grad_u,) = torch.autograd.grad(y, u, torch.ones_like(y))
            u64 = u.detach().double().requires_grad_()
            (grad_ref,) = torch.autograd.grad(reference_scan(**dict(args, u=u64))[0].sum(), u64)
            assert grad_u.dtype == dtype and rel_err(grad_u, grad_ref) <= TOL[dtype], D


@pytest.mark.parametrize("simd", ["avx512_bf16", "avx512", "avx2", "baseline"])
@pytest.mark.parametrize("dtype", LOW)
def test_laplacian_ops_read_16_bit_in_place_at_every_simd_level(simd, dtype):
    with simd_level(simd):
        for D in (32, 5):  # whole vectors (hardware conversions) and a padded tail
            g = torch.Generator().manual_seed(D)
            q, k, v = (torch.randn(2, 2, 37, D, generator=g).to(dtype).requires_grad_()
                       for _ in range(3))
            lam = torch.tensor([0.2, 0.5], requires_grad=True)
            out = laplace_attn.laplacian_attention(q, k, v, lam, None, True)
            q64, k64, v64, lam64 = (t.detach().double().requires_grad_() for t in (q, k, v, lam))
            dist = (q64[..., :, None, :] - k64[..., None, :, :]).abs().sum(-1)
            logits = (-lam64[:, None, None] * dist).masked_fill(
                torch.ones(37, 37, dtype=torch.bool).triu(1), -math.inf)
            ref = torch.softmax(logits, -1) @ v64
            assert out.dtype == dtype and rel_err(out, ref) <= TOL[dtype], D
            grads = torch.autograd.grad(out, (q, k, v, lam), torch.ones_like(out))
            grads_ref = torch.autograd.grad(ref.sum(), (q64, k64, v64, lam64))
            # inv_lambda's gradient sums N^2 terms of both signs through dO . O, with O
            # the saved 16-bit output (as FlashAttention's backward does): looser.
            for grad, grad_ref, scale in zip(grads, grads_ref, (3, 3, 3, 6)):
                assert rel_err(grad, grad_ref) <= scale * TOL[dtype], D
            kernel = laplace_attn.laplacian_kernel(q, k, lam)
            assert kernel.dtype == dtype
            assert rel_err(kernel, torch.exp(-lam64[:, None, None] * dist)) <= TOL[dtype], D
