"""The CUDA kernels' bodies, run on the CPU by the launch emulator.

The emulation library (built with the tests: build/cmake/liblaplace_attn_emulation.so,
or the path in LAPLACE_ATTN_EMULATION_LIB) defines laplace_attn_emulated::<op> with
each op's schema. Its kernels are the CUDA kernels' own bodies and launch sequences,
executed block by block and thread by thread over the grid the CUDA launcher
computes, behind the driver the CUDA registration uses. Each is compared with the
CPU op (float64: 1e-12, float32: 1e-5, relative to the largest value) and with the
independent float64 reference.
"""
import os
from pathlib import Path

import pytest
import torch

import laplace_attn  # noqa: F401  (loads liblaplace_attn.so, which the emulation links)
from scan_reference import make_inputs, reference_scan

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = Path(os.environ.get("LAPLACE_ATTN_EMULATION_LIB",
                              ROOT / "build" / "cmake" / "liblaplace_attn_emulation.so"))


@pytest.fixture(scope="module")
def emulated():
    assert LIBRARY.exists(), (
        f"{LIBRARY} is missing: build with LAPLACE_ATTN_BUILD_TESTS=1 (scripts/test.sh does)")
    torch.ops.load_library(str(LIBRARY))
    torch.ops.laplace_attn_emulated.set_execute(True)
    return torch.ops.laplace_attn_emulated


def relative_error(actual, expected, floor=1e-300):
    """Largest difference relative to the largest expected value (at least floor)."""
    if expected.numel() == 0:
        return 0.0
    scale = expected.double().abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / max(scale, floor)


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}

# (B, N, H, S, D, bilateral, gate, states): chunks are 32 steps, parameter-gradient
# groups 128, so N walks across both boundaries.
SCAN_SHAPES = [
    (1, 1, 1, 1, 1, False, False, False),
    (2, 2, 1, 2, 3, True, False, False),
    (1, 31, 2, 3, 4, False, True, False),
    (2, 32, 2, 3, 4, True, True, True),
    (1, 33, 1, 4, 5, True, False, True),
    (3, 63, 2, 2, 3, False, False, True),
    (1, 64, 3, 2, 2, True, True, False),
    (2, 65, 1, 3, 7, True, True, True),
    (1, 96, 2, 1, 8, False, True, True),
    (1, 127, 1, 2, 3, True, False, False),
    (2, 128, 2, 2, 4, True, True, True),
    (1, 129, 1, 3, 2, False, False, False),
    (1, 130, 2, 2, 5, True, True, True),
    (2, 200, 1, 2, 3, True, False, True),
    (1, 255, 1, 1, 4, False, True, False),
    (1, 257, 2, 2, 2, True, True, True),
    (1, 300, 1, 5, 3, True, True, False),
    (3, 40, 4, 2, 1, False, False, False),
    (1, 50, 1, 6, 16, True, True, True),
    (2, 77, 2, 3, 33, True, False, False),
    (1, 513, 1, 1, 2, True, True, True),
    (1, 0, 2, 2, 3, True, True, True),
]


def scan_args(B, N, H, S, D, bilateral, gate, states, dtype, seed=0):
    args = make_inputs(B=B, N=N, H=H, D=D, S=S, dtype=dtype, bilateral=bilateral, gate=gate,
                       states=states, seed=seed)
    if gate:  # some nodes exactly off: their states pass through
        args["gate"][..., ::2] = 0
    return args


def call_scan(ops, a):
    return ops.laplace_scan(a["u"], a["decay"], a["freq"], a["c_fwd"], a["c_bwd"], a["gate"],
                            a["state_fwd"], a["state_bwd"])


def call_scan_backward(ops, a, grads, mask):
    return ops._laplace_scan_backward(*grads, a["u"], a["decay"], a["freq"], a["c_fwd"], a["c_bwd"],
                                      a["gate"], a["state_fwd"], a["state_bwd"], None, mask)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SCAN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_laplace_scan_kernels_equal_the_cpu_op(emulated, shape, dtype):
    a = scan_args(*shape, dtype=dtype)
    cpu = call_scan(torch.ops.laplace_attn, a)
    emu = call_scan(emulated, a)
    for name, x, y in zip(["y", "final_fwd", "first_bwd"], emu, cpu):
        err = relative_error(x, y)
        assert err <= TOLERANCE[dtype], (name, err)
    if dtype == torch.float64:
        ref = reference_scan(**a)
        for name, x, y in zip(["y", "final_fwd", "first_bwd"], emu, ref):
            err = relative_error(x, y)
            assert err <= 1e-10, (name, err)

    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(dtype) for t in cpu]
    if not shape[5]:
        grads[2] = None
    cpu_g = call_scan_backward(torch.ops.laplace_attn, a, grads, [True] * 8)
    emu_g = call_scan_backward(emulated, a, grads, [True] * 8)
    names = ["u", "decay", "freq", "c_fwd", "c_bwd", "gate", "state_fwd", "state_bwd"]
    for name, x, y in zip(names, emu_g, cpu_g):
        assert x.shape == y.shape, name
        err = relative_error(x, y)
        assert err <= TOLERANCE[dtype], (name, err)


def test_packed_laplace_scan_on_the_cuda_kernels(emulated):
    """A packed batch runs the CUDA kernels once per sequence (lengths across
    the chunk boundaries, one empty)."""
    lengths = [31, 0, 70, 1, 33]
    a = make_inputs(B=len(lengths), N=1, H=2, D=3, S=2, bilateral=True, gate=True,
                    states=True, seed=2)
    a["u"] = torch.randn(1, sum(lengths), 2, 3, dtype=torch.float64)
    ends = torch.tensor(lengths).cumsum(0)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), ends]).to(torch.int32)
    cpu = torch.ops.laplace_attn.laplace_scan(*a.values(), cu)
    emu = emulated.laplace_scan(*a.values(), cu)
    for x, y in zip(emu, cpu):
        assert relative_error(x, y) <= 1e-12
    grads = [torch.randn_like(t) for t in cpu]
    cpu_g = torch.ops.laplace_attn._laplace_scan_backward(*grads, *a.values(), cu, [True] * 8)
    emu_g = emulated._laplace_scan_backward(*grads, *a.values(), cu, [True] * 8)
    for x, y in zip(emu_g, cpu_g):
        assert x.shape == y.shape and relative_error(x, y) <= 1e-12


@pytest.mark.parametrize("mask", [
    [True, False, False, False, False, False, False, False],   # grad_u only: no parameter pass
    [False, True, True, False, False, False, False, False],    # the pole only
    [False, False, False, True, True, False, False, False],    # c only: no adjoint pass
    [False, False, False, False, False, True, False, False],   # the gate only
    [False, False, False, False, False, False, True, True],    # the states only
])
def test_laplace_scan_backward_parts(emulated, mask):
    a = scan_args(2, 70, 2, 3, 4, True, True, True, torch.float64)
    cpu = call_scan(torch.ops.laplace_attn, a)
    grads = [torch.randn_like(t) for t in cpu]
    for x, y in zip(call_scan_backward(emulated, a, grads, mask),
                    call_scan_backward(torch.ops.laplace_attn, a, grads, mask)):
        assert x.shape == y.shape
        assert relative_error(x, y) <= 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_laplace_scan_kernels_read_16_bit_activations(emulated, dtype, tol):
    a = scan_args(2, 150, 2, 3, 8, True, True, True, torch.float32)
    a["u"] = a["u"].to(dtype)
    emu = call_scan(emulated, a)
    assert emu[0].dtype == dtype and emu[1].dtype == torch.float32
    ref = reference_scan(**a)
    for x, y in zip(emu, ref):
        err = relative_error(x, y)
        assert err <= tol, err
    # The same values as the CPU kernels, up to the final rounding of y.
    cpu = call_scan(torch.ops.laplace_attn, a)
    assert relative_error(emu[1], cpu[1]) <= 1e-5
    assert relative_error(emu[0].float(), cpu[0].float()) <= 2 * tol


def launch_plan(ops, call):
    ops.set_execute(False)
    try:
        call()
        return [line.split() for line in ops.launches()]
    finally:
        ops.set_execute(True)


def test_laplace_scan_fills_a_gpu_at_the_benchmark_shape(emulated):
    """B=1, H=8, D=64, N=16k: the scan's per-chunk kernels launch >= 100k threads."""
    a = scan_args(1, 16384, 8, 16, 64, True, False, False, torch.float32)
    plan = launch_plan(emulated, lambda: call_scan(emulated, a))
    threads = {kernel: int(work) for kernel, _, _, work in plan}
    assert threads["scan_chunk_summaries"] >= 100_000, plan
    assert threads["scan_chunk_outputs"] >= 100_000, plan


# --- laplacian_kernel ------------------------------------------------------------------

# (B, H, N, M, D): odd sizes, single rows and columns, D across the CPU's padding.
KERNEL_SHAPES = [(1, 1, 1, 1, 1), (2, 3, 9, 7, 5), (1, 1, 33, 70, 64), (1, 2, 5, 40, 17),
                 (2, 1, 16, 16, 16), (1, 1, 128, 3, 2), (1, 2, 3, 129, 3), (3, 1, 31, 33, 8),
                 (1, 1, 64, 64, 1), (2, 2, 17, 1, 4), (1, 1, 1, 100, 33), (1, 3, 40, 41, 6),
                 (1, 1, 257, 5, 2), (2, 1, 7, 7, 31), (1, 1, 2, 2, 65), (1, 2, 50, 50, 3),
                 (1, 1, 100, 100, 10), (2, 2, 11, 13, 1), (1, 1, 0, 5, 3), (1, 1, 5, 9, 0)]


def kernel_args(B, H, N, M, D, dtype, per_head=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
    x2 = torch.randn(B, H, M, D, generator=g, dtype=torch.float64)
    lam = (0.05 + torch.rand(H if per_head else (), generator=g, dtype=torch.float64)) / max(D, 1)
    return [t.to(dtype) for t in (x1, x2, lam)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_laplacian_kernel_kernels_equal_the_cpu_op(emulated, shape, dtype):
    x1, x2, lam = kernel_args(*shape, dtype, per_head=shape[0] != 2)
    cpu = torch.ops.laplace_attn.laplacian_kernel(x1, x2, lam)
    emu = emulated.laplacian_kernel(x1, x2, lam)
    assert relative_error(emu, cpu) <= TOLERANCE[dtype]
    if dtype == torch.float64 and cpu.numel():
        ref = torch.exp(-(lam if lam.dim() == 0 else lam[None, :, None, None])
                        * torch.cdist(x1, x2, p=1))
        assert relative_error(emu, ref) <= 1e-12
    grad = torch.randn(cpu.shape, generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64).to(dtype)
    args = (grad, x1, x2, lam, cpu, [True, True, True])
    for x, y in zip(emulated._laplacian_kernel_backward(*args),
                    torch.ops.laplace_attn._laplacian_kernel_backward(*args)):
        assert x.shape == y.shape
        assert relative_error(x, y) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_laplacian_kernel_kernels_read_16_bit_matrices(emulated, dtype):
    x1, x2, lam = kernel_args(2, 2, 20, 30, 7, torch.float32)
    x1, x2 = x1.to(dtype), x2.to(dtype)
    emu = emulated.laplacian_kernel(x1, x2, lam)
    cpu = torch.ops.laplace_attn.laplacian_kernel(x1, x2, lam)
    assert emu.dtype == dtype
    assert relative_error(emu.float(), cpu.float()) <= 1e-2


# --- laplacian_attention ---------------------------------------------------------------

# (B, H, N, M, D, E, causal, padded): key counts across the split size (64) and
# row counts small enough that long key ranges are split.
ATTENTION_SHAPES = [
    (1, 1, 1, 1, 1, 1, False, False), (2, 3, 11, 11, 5, 4, True, True),
    (1, 1, 7, 200, 3, 2, False, True), (1, 1, 3, 1000, 4, 3, False, False),
    (2, 1, 65, 65, 8, 8, True, False), (1, 2, 64, 64, 33, 40, True, True),
    (1, 1, 5, 129, 2, 70, False, False), (1, 1, 130, 130, 3, 3, True, True),
    (3, 1, 9, 17, 1, 1, False, True), (1, 1, 1, 513, 6, 5, False, True),
    (1, 4, 31, 33, 4, 4, True, False), (1, 1, 2, 300, 32, 32, False, False),
    (2, 2, 20, 20, 7, 9, True, True), (1, 1, 40, 64, 5, 1, False, False),
    (1, 1, 100, 100, 2, 2, False, True), (1, 1, 16, 16, 64, 64, True, False),
    (1, 2, 3, 3, 3, 0, False, False), (1, 1, 6, 6, 0, 3, True, False),
    (1, 1, 257, 257, 2, 2, True, False), (2, 1, 1, 65, 3, 3, False, True),
    (1, 1, 40, 20, 3, 3, True, True), (1, 2, 1, 300, 4, 4, True, False),  # causal, N != M
]


def attention_args(B, H, N, M, D, E, causal, padded, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, M, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, M, E, generator=g, dtype=torch.float64)
    lam = 0.1 + torch.rand(H, generator=g, dtype=torch.float64)
    pad = None
    if padded:
        pad = torch.zeros(B, M, dtype=torch.bool)
        pad[0, -max(1, M // 4):] = True
        if B > 1:
            pad[1, :] = True  # a batch element that sees no key at all
    return [t.to(dtype) for t in (q, k, v, lam)], pad


def dense_attention(q, k, v, lam, pad, causal):
    scores = -lam[None, :, None, None] * torch.cdist(q, k, p=1)
    allowed = torch.ones(q.shape[0], 1, q.shape[2], k.shape[2], dtype=torch.bool)
    if causal:
        N, M = q.shape[2], k.shape[2]
        allowed = allowed & torch.ones(N, M, dtype=torch.bool).tril(M - N)  # bottom right
    if pad is not None:
        allowed = allowed & ~pad[:, None, None, :]
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0) @ v


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_laplacian_attention_kernels_equal_the_cpu_op(emulated, shape, dtype):
    (q, k, v, lam), pad = attention_args(*shape, dtype)
    causal = shape[6]
    cpu_out, cpu_lse = torch.ops.laplace_attn._laplacian_attention_forward(q, k, v, lam, pad, causal, None, None)
    emu_out, emu_lse = emulated._laplacian_attention_forward(q, k, v, lam, pad, causal, None, None)
    assert relative_error(emu_out, cpu_out) <= TOLERANCE[dtype]
    finite = torch.isfinite(cpu_lse)
    assert torch.equal(finite, torch.isfinite(emu_lse))
    assert relative_error(emu_lse[finite], cpu_lse[finite]) <= TOLERANCE[dtype]
    if dtype == torch.float64:
        assert relative_error(emu_out, dense_attention(q, k, v, lam, pad, causal)) <= 1e-12
    grad = torch.randn(cpu_out.shape, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64).to(dtype)
    args = (grad, q, k, v, lam, pad, causal, None, None, cpu_out, cpu_lse, [True] * 4)
    emu_g = emulated._laplacian_attention_backward(*args)
    cpu_g = torch.ops.laplace_attn._laplacian_attention_backward(*args)
    for x, y in zip(emu_g[:3], cpu_g[:3]):
        assert x.shape == y.shape
        # floor 1: a gradient that is exactly 0 in one rounding (a single key) is
        # a few ulps of the O(1) inputs in another.
        assert relative_error(x, y, floor=1.0) <= TOLERANCE[dtype]
    # d inv_lambda sums N * M terms of both signs: in float32 the order of the
    # sum shows, so both are held to the float64 value.
    exact = torch.ops.laplace_attn._laplacian_attention_backward(
        *[t.double() if torch.is_tensor(t) and t.is_floating_point() else t for t in args])[3]
    lambda_tol = {torch.float64: 1e-12, torch.float32: 2e-4}[dtype]
    assert relative_error(emu_g[3], exact, floor=1.0) <= lambda_tol
    assert relative_error(cpu_g[3], exact, floor=1.0) <= lambda_tol


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_laplacian_attention_kernels_read_16_bit_activations(emulated, dtype):
    (q, k, v, lam), pad = attention_args(2, 2, 40, 300, 8, 40, True, True, torch.float32)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    emu_out, emu_lse = emulated._laplacian_attention_forward(q, k, v, lam, pad, True, None, None)
    assert emu_out.dtype == dtype and emu_lse.dtype == torch.float32
    ref = dense_attention(q.double(), k.double(), v.double(), lam.double(), pad, True)
    assert relative_error(emu_out, ref) <= 2e-2
    grad = torch.randn_like(emu_out)
    args = (grad, q, k, v, lam, pad, True, None, None, emu_out, emu_lse, [True] * 4)
    for x, y in zip(emulated._laplacian_attention_backward(*args),
                    torch.ops.laplace_attn._laplacian_attention_backward(*args)):
        assert x.dtype == y.dtype
        assert relative_error(x.float(), y.float()) <= 2e-2


def test_laplacian_attention_splits_long_keys(emulated):
    """Few rows and many keys: the keys are split, so the forward fills a GPU."""
    (q, k, v, lam), _ = attention_args(1, 8, 16, 16384, 64, 64, False, False, torch.float32)
    plan = launch_plan(emulated, lambda: emulated._laplacian_attention_forward(
        q, k, v, lam, None, False, None, None))
    threads = {kernel: int(work) for kernel, _, _, work in plan}
    assert threads["attention_forward_split"] >= 100 * 16 * 8, plan


# --- gumbel_node_gate ------------------------------------------------------------------

GATE_SHAPES = [(1,), (2,), (127,), (128,), (129,), (255,), (256,), (257,), (3, 2, 7), (1, 1, 1000),
               (0, 4), (4, 0), (2, 8, 16), (1, 1, 1), (5, 3), (1, 2, 3, 4), (33, 33), (1, 8, 64),
               (2, 1, 130), (7, 11, 13)]  # around the 128-thread blocks


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", GATE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("hard,training", [(False, True), (True, True), (True, False)])
def test_gumbel_node_gate_kernels_equal_the_cpu_op(emulated, shape, dtype, hard, training):
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    noise = torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)
    ops = torch.ops.laplace_attn
    assert relative_error(emulated.gumbel_node_gate(logits, noise, 0.5, hard, training),
                          ops.gumbel_node_gate(logits, noise, 0.5, hard, training)) <= TOLERANCE[dtype]
    grad = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    assert relative_error(emulated._gumbel_node_gate_backward(grad, logits, noise, 0.5, training),
                          ops._gumbel_node_gate_backward(grad, logits, noise, 0.5, training)
                          ) <= TOLERANCE[dtype]
