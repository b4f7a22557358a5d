"""Benchmark of laplace_linear_attention (causal) against softmax attention
(F.scaled_dot_product_attention, causal), laplace_scan (the elementwise STLT
mixer, causal) and the plain-PyTorch quadratic form of the same operator.

Each measurement runs in its own process (benchlib.py: time and peak memory of
one call). Prints a table with the rate in G fused multiply-adds per second
against this machine's float32 matmul rate, and writes
bench_results/bench_linear_attention.json and .png.

    .venv/bin/python scripts/bench_linear_attention.py [--lengths 1024 4096 16384 65536]
        [--sdpa-max 16384] [--quadratic-max 2048]
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import benchlib

B, H, D, S = 1, 8, 64, 8
CHUNK = 64


def linear_fma(N):
    """FMAs of the forward: per token, head and node the state readout and update
    (2 * 2 * Dk * Dv, real and imaginary parts), and the in-chunk GEMMs."""
    return B * N * H * (4 * S * D * D + CHUNK * 2 * D)


def make_inputs(N, requires_grad, activation=torch.float32):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, N, H, D, generator=g).div(D ** 0.5).to(activation) for _ in range(2))
    v = torch.randn(B, N, H, D, generator=g).to(activation)
    decay = torch.logspace(-3.5, -0.5, S).repeat(H, 1)
    freq = torch.rand(H, S, generator=g) * 0.5
    c_fwd = torch.randn(H, S, 2, generator=g) / S
    tensors = [q, k, v, decay, freq, c_fwd]
    return [t.requires_grad_(requires_grad) for t in tensors]


def quadratic(q, k, v, decay, freq, c_fwd):
    """The operator as an N x N masked matrix product in plain PyTorch."""
    N = q.shape[1]
    t = torch.arange(N, dtype=torch.float32)
    lag = (t[:, None] - t[None, :]).clamp(min=0)
    radius = torch.exp(-decay[..., None, None] * lag)  # [H, S, N, N]
    angle = freq[..., None, None] * lag
    kernel = (radius * (c_fwd[..., 0, None, None] * torch.cos(angle)
                        + c_fwd[..., 1, None, None] * torch.sin(angle))).sum(1)
    kernel = kernel * (lag >= 0) * torch.ones(N, N).tril()
    scores = torch.einsum("bthd,bshd->bhts", q, k) * kernel
    return torch.einsum("bhts,bshe->bthe", scores, v)


def run_method(method, N, backward):
    """Returns a callable doing one forward (and backward) pass."""
    if method == "sdpa":
        q, k, v = (torch.randn(B, H, N, D, requires_grad=backward) for _ in range(3))

        def step():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            if backward:
                out.backward(torch.ones_like(out))
        return step

    import laplace_attn

    if method == "laplace_scan":
        g = torch.Generator().manual_seed(0)
        tensors = [torch.randn(B, N, H, D, generator=g), torch.logspace(-3.5, -0.5, S).repeat(H, 1),
                   torch.rand(H, S, generator=g) * 0.5, torch.randn(H, S, D, 2, generator=g) / S]
        inputs = [t.requires_grad_(backward) for t in tensors]

        def step():
            y = laplace_attn.laplace_scan(*inputs)[0]
            if backward:
                y.backward(torch.ones_like(y))
        return step

    activation = torch.bfloat16 if method.endswith("bfloat16") else torch.float32
    inputs = make_inputs(N, backward, activation)

    def step():
        if method == "quadratic":
            y = quadratic(*inputs)
        else:
            y = laplace_attn.laplace_linear_attention(*inputs, return_states=False)[0]
        if backward:
            y.backward(torch.ones_like(y))
    return step


def measure(method, N, backward):
    repeats = 1 if N > 16384 or (method in ("sdpa", "quadratic") and N > 4096) else 3
    return benchlib.measure_in_subprocess(__file__, method, N, int(backward), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--sdpa-max", type=int, default=16384,
                        help="longest N for SDPA (quadratic time)")
    parser.add_argument("--quadratic-max", type=int, default=2048,
                        help="longest N for the plain-PyTorch quadratic form (N^2 memory)")
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
    print(f"B={B}, H={H}, D={D}, S={S}, causal, float32 parameters; "
          f"torch float32 matmul: {matmul:.1f} GFMA/s\n")

    methods = ("linear_attention", "linear_attention bfloat16", "laplace_scan", "quadratic",
               "sdpa")
    limits = {"sdpa": args.sdpa_max, "quadratic": args.quadratic_max}
    header = (f"{'N':>7} | {'method':<25} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | "
              f"{'fwd MB':>8} | {'fwd+bwd MB':>10} | {'GFMA/s':>7} | {'% matmul':>8}")
    print(header)
    print("-" * len(header))
    # The baseline computes the same operator: check it once on a short input.
    check = make_inputs(130, False)
    gap = (quadratic(*check) - laplace_attn.laplace_linear_attention(*check)[0]).abs().max()
    print(f"quadratic form vs laplace_linear_attention at N=130: max |difference| "
          f"{float(gap):.1e}\n")
    rows = []
    for N in args.lengths:
        for method in methods:
            row = {"N": N, "method": method}
            if N > limits.get(method, N):
                row["skipped"] = f"N > {limits[method]}"
            else:
                row["forward"] = measure(method, N, False)
                row["forward_backward"] = measure(method, N, True)
            if method.startswith("linear_attention") and "seconds" in row.get("forward", {}):
                row["gfma_per_s"] = linear_fma(N) / row["forward"]["seconds"] / 1e9
                row["fraction_of_matmul"] = row["gfma_per_s"] / matmul
            rows.append(row)
            print(benchlib.format_row(row, 25), flush=True)
        print("-" * len(header))

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"config": {"B": B, "H": H, "D": D, "S": S, "causal": True},
              "build": info, "torch": torch.__version__, "matmul_gfma_per_s": matmul,
              "rows": rows}
    (out / "bench_linear_attention.json").write_text(json.dumps(result, indent=2))
    benchlib.plot_time_and_memory(rows, methods, out / "bench_linear_attention.png",
                                  f"B={B} H={H} D={D} S={S}, causal")
    print(f"\nwrote {out / 'bench_linear_attention.json'} and {out / 'bench_linear_attention.png'}")


if __name__ == "__main__":
    main()
