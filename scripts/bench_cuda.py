"""GPU benchmark: laplace_scan and laplacian_attention against softmax attention
(F.scaled_dot_product_attention with the flash backend) and the plain-PyTorch
FFT form of the scan, timed with CUDA events; peak memory from the caching
allocator. Prints one table, the threads each kernel launches at every shape
(from the launch emulator's plan, when the tests' emulation library is built),
and writes bench_results/bench_cuda.json.

    python scripts/bench_cuda.py [--lengths 1024 4096 16384 65536] [--device cuda]

--device cpu runs the same logic on the CPU (wall-clock timing, no memory
column): how scripts/gpu_check.sh --dry-run checks this script without a GPU.
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import laplace_attn
from laplace_attn.reference import laplace_scan_fft

B, H, D, S = 1, 8, 64, 16
ROOT = Path(__file__).resolve().parents[1]


def scan_inputs(N, dtype, device, grad):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, N, H, D, generator=g).to(dtype)
    decay = torch.logspace(-3.5, -0.5, S).repeat(H, 1)
    freq = torch.rand(H, S, generator=g) * 0.5
    c_fwd, c_bwd = (torch.randn(H, S, D, 2, generator=g) / S for _ in range(2))
    return [t.to(device).requires_grad_(grad) for t in (u, decay, freq, c_fwd, c_bwd)]


def attention_inputs(N, dtype, device, grad):
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(B, H, N, D, generator=g).to(dtype).to(device).requires_grad_(grad)
           for _ in range(3)]
    return qkv


def method_step(method, N, device, backward):
    """A callable doing one forward (and backward) pass of `method` at length N."""
    dtype = torch.bfloat16 if method.endswith("bf16") else torch.float32
    if method.startswith("laplace_scan") or method == "fft":
        inputs = scan_inputs(N, dtype, device, backward)
        op = laplace_attn.laplace_scan if method != "fft" else None

        def run():
            return op(*inputs)[0] if op else laplace_scan_fft(*inputs)
    elif method.startswith("laplacian_attention"):
        q, k, v = attention_inputs(N, dtype, device, backward)
        lam = torch.full((H,), 1.0 / D, device=device)

        def run():
            return laplace_attn.laplacian_attention(q, k, v, lam, None, True)
    else:  # sdpa: the flash kernel on a GPU (16-bit inputs), the default one elsewhere
        q, k, v = attention_inputs(N, torch.bfloat16 if device == "cuda" else torch.float32,
                                   device, backward)

        def run():
            if device != "cuda":
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def step():
        out = run()
        if backward:
            out.backward(torch.ones_like(out))
    return step


def time_step(step, device, repeats):
    """Median seconds of `repeats` calls after a warm-up; peak allocated bytes."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    times.sort()
    result = {"seconds": times[len(times) // 2]}
    if device == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    return result


def launch_plans(N):
    """Threads per kernel of the CUDA launch sequences at this shape, or None."""
    lib = Path(os.environ.get("LAPLACE_ATTN_EMULATION_LIB",
                              ROOT / "build" / "cmake" / "liblaplace_attn_emulation.so"))
    if not lib.exists():
        return None
    torch.ops.load_library(str(lib))
    ops = torch.ops.laplace_attn_emulated
    ops.set_execute(False)
    plans = {}
    try:
        u, decay, freq, c_fwd, c_bwd = scan_inputs(N, torch.float32, "cpu", False)
        y, final, first = ops.laplace_scan(u, decay, freq, c_fwd, c_bwd)
        plans["laplace_scan forward"] = ops.launches()
        ops._laplace_scan_backward(y, final, first, u, decay, freq, c_fwd, c_bwd, None, None, None,
                                   None, [True] * 8)
        plans["laplace_scan backward"] = ops.launches()
        q, k, v = attention_inputs(N, torch.float32, "cpu", False)
        lam = torch.full((H,), 1.0 / D)
        ops._laplacian_attention_forward(q, k, v, lam, None, True, None, None)
        plans["laplacian_attention forward"] = ops.launches()
    finally:
        ops.set_execute(True)
    return {name: [{"kernel": line.split()[0], "threads": int(line.split()[3])} for line in lines]
            for name, lines in plans.items()}


METHODS = ["laplace_scan", "laplace_scan bf16", "fft", "laplacian_attention",
           "laplacian_attention bf16", "sdpa"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--attention-max", type=int, default=16384,
                        help="longest N for the quadratic-time exact attentions")
    parser.add_argument("--out", default="bench_results")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False (use --device cpu)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"laplace_attn {laplace_attn.build_info()}; torch {torch.__version__}; {name}")
    print(f"B={B}, H={H}, D={D}, S={S}; scan bilateral; attention causal\n")
    header = f"{'N':>7} | {'method':<25} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | {'fwd+bwd MB':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    for N in args.lengths:
        for method in METHODS:
            row = {"N": N, "method": method}
            quadratic = method.startswith(("laplacian_attention", "sdpa"))
            if quadratic and N > args.attention_max:
                row["skipped"] = f"N > --attention-max {args.attention_max}"
                print(f"{N:>7} | {method:<25} | skipped: {row['skipped']}")
                rows.append(row)
                continue
            row["forward"] = time_step(method_step(method, N, args.device, False), args.device,
                                       args.repeats)
            row["forward_backward"] = time_step(method_step(method, N, args.device, True),
                                                args.device, args.repeats)
            memory = row["forward_backward"].get("peak_bytes")
            memory = f"{memory / 2**20:10.0f}" if memory is not None else f"{'-':>10}"
            print(f"{N:>7} | {method:<25} | {row['forward']['seconds'] * 1e3:9.2f} | "
                  f"{row['forward_backward']['seconds'] * 1e3:10.2f} | {memory}")
            rows.append(row)
        print("-" * len(header))
    plans = {N: launch_plans(N) for N in args.lengths}
    if plans[args.lengths[0]] is None:
        print("\nlaunch plans: the emulation library is not built (LAPLACE_ATTN_BUILD_TESTS=1)")
    else:
        print("\nthreads launched per kernel (CUDA launch sequences, from the emulator's plan)")
        for N, plan in plans.items():
            for sequence, launches in plan.items():
                cells = ", ".join(f"{l['kernel']} {l['threads']}" for l in launches)
                print(f"  N={N:>6} {sequence}: {cells}")
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "bench_cuda.json").write_text(json.dumps(
        {"device": name, "config": {"B": B, "H": H, "D": D, "S": S}, "rows": rows,
         "launch_plans": {str(n): p for n, p in plans.items()}}, indent=2))
    print(f"\nwrote {out / 'bench_cuda.json'}")


if __name__ == "__main__":
    main()
