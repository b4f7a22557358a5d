"""laplace_scan against an independent float64 reference, plus gradients,
chunking, determinism, dtypes, SIMD levels, tracing and input validation."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device
from scan_reference import make_inputs, reference_scan

ARG_NAMES = ["u", "decay", "freq", "c_fwd", "c_bwd", "gate", "state_fwd", "state_bwd"]

# Shapes that hit every edge of the kernels: channels not a multiple of the SIMD
# width, sequences longer than a time tile, node counts not a multiple of the
# register block, a single step.
SHAPES = [
    dict(B=2, N=37, H=3, D=5, S=6),
    dict(B=1, N=300, H=2, D=19, S=7),
    dict(B=1, N=260, H=2, D=64, S=9),
    dict(B=3, N=1, H=1, D=17, S=1),
]
VARIANTS = [
    dict(bilateral=False),
    dict(bilateral=True),
    dict(bilateral=True, gate=True, states=True),
    dict(bilateral=False, gate=True, states=True),
]


def scan(args):
    return laplace_attn.laplace_scan(**args)


def assert_close_rel(actual, expected, rtol, atol_scale=1e-30):
    actual, expected = actual.cpu(), expected.cpu()
    scale = expected.abs().max().clamp_min(atol_scale) if expected.numel() else 1.0
    err = (actual.double() - expected.double()).abs().max() if expected.numel() else 0.0
    assert err <= rtol * scale, f"max error {float(err):.3e} > {rtol:.1e} x {float(scale):.3e}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_matches_reference(shape, variant, device):
    args = make_inputs(**shape, **variant)
    for out, ref in zip(scan(to_device(args, device)), reference_scan(**args)):
        assert out.device.type == device.type
        assert out.dtype == torch.float64
        assert_close_rel(out, ref, 1e-10)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("variant", VARIANTS[1:3])
def test_float32_matches_reference(shape, variant, device):
    args = make_inputs(**shape, **variant, dtype=torch.float32)
    for out, ref in zip(scan(to_device(args, device)), reference_scan(**args)):
        assert out.dtype == torch.float32
        assert_close_rel(out, ref, 1e-5)


@pytest.mark.parametrize("simd", ["avx512_bf16", "avx512", "avx2", "baseline"])
def test_every_simd_level_matches_reference(simd):
    available = laplace_attn.build_info()["simd"]
    try:
        laplace_attn.set_cpu_simd(simd)
    except RuntimeError as e:
        assert simd in str(e)
        pytest.skip(f"{simd} not available on this CPU (running {available})")
    try:
        for dtype, tol in [(torch.float64, 1e-10), (torch.float32, 1e-5)]:
            args = make_inputs(B=2, N=150, H=2, D=21, S=6, gate=True, states=True, dtype=dtype)
            for out, ref in zip(scan(args), reference_scan(**args)):
                assert_close_rel(out, ref, tol)
            grads = torch.autograd.grad(scan({**args, "u": args["u"].requires_grad_()})[0].sum(),
                                        args["u"])[0]
            u64 = args["u"].detach().double().requires_grad_()
            ref_args = {**args, "u": u64}
            ref_grad = torch.autograd.grad(reference_scan(**ref_args)[0].sum(), u64)[0]
            assert_close_rel(grads, ref_grad, tol)
    finally:
        laplace_attn.set_cpu_simd("auto")


def test_unknown_simd_level_is_an_error():
    with pytest.raises(RuntimeError, match="unknown or unavailable SIMD level 'sse9'"):
        laplace_attn.set_cpu_simd("sse9")


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_half_precision_within_tolerance_of_float32(dtype, tol, device):
    # Inputs are rounded to the low precision; the scan accumulates in float32,
    # so the error is that of one rounding of inputs and outputs.
    args = to_device(make_inputs(B=1, N=500, H=2, D=16, S=8, gate=True, states=True, dtype=dtype),
                     device)
    args32 = {k: (v.float() if v is not None else None) for k, v in args.items()}
    for i, (out, ref) in enumerate(zip(scan(args), scan(args32))):
        assert out.dtype == (dtype if i == 0 else torch.float32)  # states stay float32
        assert_close_rel(out.float(), ref, tol)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_every_input(variant, device):
    args = to_device(make_inputs(B=2, N=9, H=2, D=3, S=3, requires_grad=True, **variant), device)
    names = [k for k in ARG_NAMES if args[k] is not None]

    def fn(*xs):
        return laplace_attn.laplace_scan(**dict(zip(names, xs)))

    assert gradcheck(fn, tuple(args[k] for k in names))


@pytest.mark.parametrize("variant", VARIANTS[1:3])
def test_gradients_match_reference_on_longer_sequences(variant, device):
    args = make_inputs(B=2, N=200, H=2, D=7, S=5, requires_grad=True, **variant)
    names = [k for k in ARG_NAMES if args[k] is not None]
    on_device = to_device(args, device)
    out, ref = scan(on_device), reference_scan(**args)
    weights = [torch.randn_like(o) for o in ref]
    loss = sum((o * w.to(device)).sum() for o, w in zip(out, weights))
    ref_loss = sum((o * w).sum() for o, w in zip(ref, weights))
    grads = torch.autograd.grad(loss, [on_device[k] for k in names])
    ref_grads = torch.autograd.grad(ref_loss, [args[k] for k in names])
    for name, g, r in zip(names, grads, ref_grads):
        assert_close_rel(g, r, 1e-9), name


def test_switched_off_nodes_are_frozen_and_keep_gate_gradient(device):
    args = make_inputs(B=2, N=40, H=2, D=4, S=5, gate=True, states=True)
    args["gate"][0, 1, 2] = 0.0
    args["gate"][1, :, 0] = 0.0
    ref = reference_scan(**args)
    args = to_device(args, device)
    y, final_fwd, first_bwd = scan(args)
    for out, r in zip((y, final_fwd, first_bwd), ref):
        assert_close_rel(out, r, 1e-10)
    # Frozen: the state passes through unchanged.
    assert torch.equal(final_fwd[0, 1, 2], args["state_fwd"][0, 1, 2])
    assert torch.equal(first_bwd[1, :, 0], args["state_bwd"][1, :, 0])
    # dL/dgate at gate = 0 is the derivative of y, which straight-through gating needs.
    gate = args["gate"].clone().requires_grad_()
    (g,) = torch.autograd.grad(scan({**args, "gate": gate})[0].sum(), gate)
    eps = 1e-6
    for b, h, k in [(0, 1, 2), (1, 0, 0)]:
        bumped = args["gate"].clone()
        bumped[b, h, k] = eps
        fd = (scan({**args, "gate": bumped})[0].sum() - y.sum()) / eps
        assert abs(float(g[b, h, k]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))


def test_all_gates_off_gives_zero_output():
    args = make_inputs(B=1, N=20, H=2, D=3, S=4, gate=True)
    args["gate"].zero_()
    y, final_fwd, first_bwd = scan(args)
    assert torch.equal(y, torch.zeros_like(y))
    assert torch.equal(final_fwd, torch.zeros_like(final_fwd))


@pytest.mark.parametrize("bilateral", [False, True])
def test_three_chunks_with_state_passing_equal_the_whole(bilateral, device):
    args = to_device(make_inputs(B=2, N=90, H=2, D=6, S=5, bilateral=bilateral, gate=True,
                                 requires_grad=True), device)
    y_full, final_full, first_full = scan(args)
    bounds = [(0, 25), (25, 61), (61, 90)]
    chunks = [args["u"][:, a:b] for a, b in bounds]
    common = {k: args[k] for k in ("decay", "freq", "c_fwd", "c_bwd", "gate")}
    # Causal states flow left to right, anticausal states right to left.
    fwd_in = [None]
    for u in chunks[:-1]:
        fwd_in.append(scan({**common, "u": u, "state_fwd": fwd_in[-1]})[1])
    bwd_in = [None] * 3
    if bilateral:
        for i in (2, 1):
            bwd_in[i - 1] = scan({**common, "u": chunks[i], "state_fwd": fwd_in[i],
                                  "state_bwd": bwd_in[i]})[2]
    outs = [scan({**common, "u": u, "state_fwd": f, "state_bwd": g})
            for u, f, g in zip(chunks, fwd_in, bwd_in)]
    y = torch.cat([o[0] for o in outs], dim=1)
    assert_close_rel(y, y_full, 1e-12)
    assert_close_rel(outs[-1][1], final_full, 1e-12)
    if bilateral:
        assert_close_rel(outs[0][2], first_full, 1e-12)
    w = torch.randn_like(y_full)
    names = ["u", "decay", "freq", "c_fwd", "gate"] + (["c_bwd"] if bilateral else [])
    g_full = torch.autograd.grad((y_full * w).sum(), [args[k] for k in names])
    g_chunk = torch.autograd.grad((y * w).sum(), [args[k] for k in names])
    for name, a, b in zip(names, g_chunk, g_full):
        assert_close_rel(a, b, 1e-10), name


def test_results_do_not_depend_on_thread_count():
    args = make_inputs(B=2, N=700, H=3, D=40, S=9, gate=True, states=True,
                       dtype=torch.float32, requires_grad=True)
    names = [k for k in ARG_NAMES if args[k] is not None]
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = scan(args)
            loss = sum((o * (i + 1)).sum() for i, o in enumerate(out))
            results.append(list(out) + list(torch.autograd.grad(loss, [args[k] for k in names])))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


# The bounds docs/ops.md states for float32 at N = 131072: the rounded pole's error
# compounds over min(N, 1/decay) steps.
LONG_SEQUENCE_BOUNDS = [
    ((1e-3, 0.2), True, 1e-4),
    ((1e-4, 0.2), False, 1e-4),
    ((0.0, 0.0), False, 2.0**-24 * 131072),
]


@pytest.mark.parametrize("decay_range,bilateral,bound", LONG_SEQUENCE_BOUNDS)
def test_long_sequence_float32_within_stated_bound(decay_range, bilateral, bound):
    for seed in range(3):
        args = make_inputs(B=1, N=131072, H=2, D=16, S=8, gate=True, dtype=torch.float64,
                           decay_range=decay_range, bilateral=bilateral, seed=seed)
        y64 = scan(args)[0]
        y32 = scan({k: (v.float() if v is not None else None) for k, v in args.items()})[0]
        assert_close_rel(y32, y64, bound)


def test_empty_sequence_returns_initial_states(device):
    args = to_device(make_inputs(B=2, N=0, H=2, D=3, S=4, states=True), device)
    y, final_fwd, first_bwd = scan(args)
    assert y.shape == (2, 0, 2, 3)
    assert torch.equal(final_fwd, args["state_fwd"])
    assert torch.equal(first_bwd, args["state_bwd"])


def test_non_contiguous_inputs_are_handled(device):
    args = to_device(make_inputs(B=2, N=30, H=3, D=5, S=4, gate=True), device)
    u_t = args["u"].transpose(1, 3).contiguous().transpose(1, 3)  # same values, permuted strides
    assert not u_t.is_contiguous()
    c_t = args["c_fwd"].permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    out = scan({**args, "u": u_t, "c_fwd": c_t})
    for a, b in zip(out, scan(args)):
        assert torch.equal(a, b)


def test_opcheck():
    samples = [
        make_inputs(B=2, N=11, H=2, D=3, S=3, requires_grad=True),
        make_inputs(B=1, N=7, H=1, D=4, S=2, bilateral=False, requires_grad=True),
        make_inputs(B=2, N=5, H=2, D=3, S=3, gate=True, states=True, requires_grad=True),
        make_inputs(B=1, N=6, H=2, D=2, S=2, gate=True, states=True, dtype=torch.float32),
    ]
    for args in samples:
        torch.library.opcheck(
            torch.ops.laplace_attn.laplace_scan.default,
            tuple(args[k] for k in ARG_NAMES),
            test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                        "test_aot_dispatch_dynamic"),
        )


def test_torch_compile_fullgraph_matches_eager():
    args = make_inputs(B=1, N=33, H=2, D=4, S=3, gate=True, states=True, dtype=torch.float32,
                       requires_grad=True)

    def fn(u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd):
        y, f, g = laplace_attn.laplace_scan(u, decay, freq, c_fwd, c_bwd, gate, state_fwd,
                                            state_bwd)
        return (y * y).sum() + f.sum() - g.sum()

    inputs = [args[k] for k in ARG_NAMES]
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    eager_loss = fn(*inputs)
    compiled_loss = compiled(*inputs)
    torch.testing.assert_close(compiled_loss, eager_loss)
    eager_grads = torch.autograd.grad(eager_loss, inputs)
    compiled_grads = torch.autograd.grad(compiled_loss, inputs)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_torch_export_traces_the_op():
    class Scan(torch.nn.Module):
        def __init__(self, args):
            super().__init__()
            for k in ("decay", "freq", "c_fwd", "c_bwd"):
                self.register_buffer(k, args[k])

        def forward(self, u):
            return laplace_attn.laplace_scan(u, self.decay, self.freq, self.c_fwd, self.c_bwd)[0]

    args = make_inputs(B=1, N=20, H=2, D=4, S=3, dtype=torch.float32)
    module = Scan(args)
    exported = torch.export.export(module, (args["u"],))
    assert any("laplace_scan" in str(n.target) for n in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(args["u"]), module(args["u"]))


# --- bad inputs: each raises a clear error naming the argument -----------------

def _bad(**changes):
    args = make_inputs(B=2, N=8, H=2, D=3, S=4, gate=True, states=True, dtype=torch.float32)
    args.update(changes)
    return args


F32 = dict(dtype=torch.float32)
BAD_INPUTS = [
    ("u rank", _bad(u=torch.randn(8, 2, 3)), r"expected u of shape \[B, N, H, D\] \(4-D\)"),
    ("u dtype", _bad(u=torch.randint(0, 5, (2, 8, 2, 3))), "expected u of dtype float32"),
    ("decay rank", _bad(decay=torch.rand(8)), r"expected decay of shape \[H, S\] \(2-D\)"),
    ("freq heads", _bad(freq=torch.rand(3, 4)), r"expected freq of shape \[H, S\]"),
    ("c_fwd nodes", _bad(c_fwd=torch.randn(2, 5, 3, 2)), r"expected c_fwd of shape \[H, S, D, 2\]"),
    ("c_bwd channels", _bad(c_bwd=torch.randn(2, 4, 4, 2)), r"expected c_bwd of shape"),
    ("c_fwd not complex", _bad(c_fwd=torch.randn(2, 4, 3)), r"expected c_fwd of shape"),
    ("gate batch", _bad(gate=torch.rand(3, 2, 4)), r"expected gate of shape \[B, H, S\]"),
    ("state_fwd shape", _bad(state_fwd=torch.randn(2, 2, 4, 3)), r"expected state_fwd of shape"),
    ("negative decay", _bad(decay=-torch.rand(2, 4)), "expected decay >= 0"),
    ("nan decay", _bad(decay=torch.full((2, 4), float("nan"))), "expected decay >= 0"),
    ("dtype mix", _bad(decay=torch.rand(2, 4, dtype=torch.float64)),
     "expected decay of dtype Float"),
    ("device mix", _bad(c_fwd=torch.randn(2, 4, 3, 2, device="meta")), "expected c_fwd on cpu"),
    ("state_bwd without c_bwd", _bad(c_bwd=None), "state_bwd was given but c_bwd is None"),
]


@pytest.mark.parametrize("name,args,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(name, args, message):
    with pytest.raises(RuntimeError, match=message):
        scan(args)


@pytest.mark.parametrize("variant", [dict(bilateral=False, gate=True), dict(bilateral=True, gate=True)])
def test_fft_reference_in_the_package_matches_the_direct_sum(variant):
    from laplace_attn.reference import laplace_scan_fft

    args = make_inputs(B=2, N=130, H=2, D=5, S=4, **variant)
    y_fft = laplace_scan_fft(args["u"], args["decay"], args["freq"], args["c_fwd"], args["c_bwd"],
                             args["gate"])
    assert_close_rel(y_fft, reference_scan(**args)[0], 1e-10)
