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


def relative_error(actual, expected):
    if expected.numel() == 0:
        return 0.0
    scale = expected.double().abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / max(scale, 1e-300)


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
                                      a["gate"], a["state_fwd"], a["state_bwd"], mask)


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
