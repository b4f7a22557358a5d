"""Benchmark of laplace_scan against a plain-PyTorch FFT convolution of the same
operator and against softmax attention (F.scaled_dot_product_attention).

laplace_scan runs with float32 activations and, in the same run, with each dtype
of --activations (bfloat16 and float16 activations, float32 parameters: the
mixed-precision policy). Each measurement runs in its own process (see
benchlib.py for how time and peak memory are taken). Prints a table and writes
bench_results/bench_scan.json and .png.

    .venv/bin/python scripts/bench_scan.py [--lengths 1024 4096 ...] [--sdpa-max 16384]
        [--activations bfloat16 float16]
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import benchlib

B, H, D, S = 1, 8, 64, 32
FMA_PER_NODE_STEP = 6  # per channel and direction: complex state update 4, readout 2


LOW_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def make_inputs(N, requires_grad, activation=torch.float32):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, N, H, D, generator=g).to(activation)
    decay = torch.logspace(-3.5, -0.5, S).repeat(H, 1)
    freq = torch.rand(H, S, generator=g) * 0.5
    c_fwd = torch.randn(H, S, D, 2, generator=g) / S
    c_bwd = torch.randn(H, S, D, 2, generator=g) / S
    tensors = [u, decay, freq, c_fwd, c_bwd]
    return [t.requires_grad_(requires_grad) for t in tensors]


def run_method(method, N, backward):
    """Returns a callable doing one forward (and backward) pass."""
    if method == "sdpa":
        q, k, v = (torch.randn(B, H, N, D, requires_grad=backward) for _ in range(3))

        def step():
            out = F.scaled_dot_product_attention(q, k, v)
            if backward:
                out.backward(torch.ones_like(out))
        return step

    import laplace_attn
    from laplace_attn.reference import laplace_scan_fft

    activation = LOW_PRECISION.get(method.partition(" ")[2], torch.float32)
    inputs = make_inputs(N, backward, activation)

    def step():
        if method.startswith("laplace_scan"):
            y = laplace_attn.laplace_scan(*inputs)[0]
        else:
            y = laplace_scan_fft(*inputs)
        if backward:
            y.backward(torch.ones_like(y))
    return step


def measure(method, N, backward):
    repeats = 1 if method == "sdpa" and N > 4096 else 3
    return benchlib.measure_in_subprocess(__file__, method, N, int(backward), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--sdpa-max", type=int, default=16384,
                        help="longest N for SDPA (quadratic: 64k takes about a minute here)")
    parser.add_argument("--activations", nargs="*", default=["bfloat16"],
                        choices=sorted(LOW_PRECISION),
                        help="16-bit activation dtypes for extra laplace_scan rows")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        benchlib.run_worker(args.worker, run_method)
        return

    import laplace_attn
    info = laplace_attn.build_info()
    matmul = benchlib.matmul_gfma()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; torch {torch.__version__}")
    print(f"B={B}, H={H}, D={D}, S={S}, bilateral, float32 parameters; "
          f"torch float32 matmul: {matmul:.1f} GFMA/s\n")

    rows = []
    scans = ["laplace_scan"] + [f"laplace_scan {name}" for name in args.activations]
    methods = (*scans, "fft", "sdpa")
    header = (f"{'N':>7} | {'method':<21} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | "
              f"{'fwd MB':>8} | {'fwd+bwd MB':>10} | {'GFMA/s':>7} | {'% matmul':>8}")
    print(header)
    print("-" * len(header))
    for N in args.lengths:
        for method in methods:
            row = {"N": N, "method": method}
            if method == "sdpa" and N > args.sdpa_max:
                row["skipped"] = f"N > --sdpa-max {args.sdpa_max}"
            else:
                row["forward"] = measure(method, N, False)
                row["forward_backward"] = measure(method, N, True)
            if method.startswith("laplace_scan") and "seconds" in row.get("forward", {}):
                fma = FMA_PER_NODE_STEP * 2 * B * N * H * D * S
                row["gfma_per_s"] = fma / row["forward"]["seconds"] / 1e9
                row["fraction_of_matmul"] = row["gfma_per_s"] / matmul
            rows.append(row)
            print(benchlib.format_row(row, 21))
        print("-" * len(header))

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"config": {"B": B, "H": H, "D": D, "S": S, "dtype": "float32",
                         "activations": ["float32", *args.activations], "bilateral": True},
              "build": info, "torch": torch.__version__, "matmul_gfma_per_s": matmul,
              "rows": rows}
    (out / "bench_scan.json").write_text(json.dumps(result, indent=2))
    benchlib.plot_time_and_memory(rows, methods, out / "bench_scan.png",
                                  f"B={B} H={H} D={D} S={S}")
    print(f"\nwrote {out / 'bench_scan.json'} and {out / 'bench_scan.png'}")


if __name__ == "__main__":
    main()
