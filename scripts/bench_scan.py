"""Benchmark of laplace_scan against a plain-PyTorch FFT convolution of the same
operator and against softmax attention (F.scaled_dot_product_attention).

Each measurement runs in its own process. Peak memory is the growth of the
resident set during one call: the kernel's high-water mark (VmHWM) is reset just
before the call and compared with the resident set (VmRSS) at that moment.
Prints a table and writes bench_results/bench_scan.json and .png.

    .venv/bin/python scripts/bench_scan.py [--lengths 1024 4096 ...] [--sdpa-max 16384]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

B, H, D, S = 1, 8, 64, 32
FMA_PER_NODE_STEP = 6  # per channel and direction: complex state update 4, readout 2


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss():
    """Resets the high-water mark to the current resident set; returns it in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes():
    return _status_kib("VmHWM") * 1024


def make_inputs(N, requires_grad):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, N, H, D, generator=g)
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

    inputs = make_inputs(N, backward)

    def step():
        if method == "laplace_scan":
            y = laplace_attn.laplace_scan(*inputs)[0]
        else:
            y = laplace_scan_fft(*inputs)
        if backward:
            y.backward(torch.ones_like(y))
    return step


def worker(method, N, backward, repeats):
    torch.manual_seed(0)
    step = run_method(method, N, backward)
    step()  # warm-up
    times, peak = [], 0
    for i in range(repeats):
        before = reset_peak_rss() if i == 0 else 0
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = peak_rss_bytes() - before
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "peak_bytes": peak}))


def matmul_gfma(n=2048, repeats=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(method, N, backward):
    repeats = 1 if method == "sdpa" and N > 4096 else 3
    cmd = [sys.executable, __file__, "--worker", method, str(N), str(int(backward)), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--sdpa-max", type=int, default=16384,
                        help="longest N for SDPA (quadratic: 64k takes about a minute here)")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, N, backward, repeats = args.worker
        worker(method, int(N), bool(int(backward)), int(repeats))
        return

    import laplace_attn
    info = laplace_attn.build_info()
    matmul = matmul_gfma()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; torch {torch.__version__}")
    print(f"B={B}, H={H}, D={D}, S={S}, bilateral, float32; "
          f"torch float32 matmul: {matmul:.1f} GFMA/s\n")

    rows = []
    header = (f"{'N':>7} | {'method':<13} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | "
              f"{'fwd MB':>8} | {'fwd+bwd MB':>10} | {'GFMA/s':>7} | {'% matmul':>8}")
    print(header)
    print("-" * len(header))
    for N in args.lengths:
        for method in ("laplace_scan", "fft", "sdpa"):
            row = {"N": N, "method": method}
            if method == "sdpa" and N > args.sdpa_max:
                row["skipped"] = f"N > --sdpa-max {args.sdpa_max}"
            else:
                row["forward"] = measure(method, N, False)
                row["forward_backward"] = measure(method, N, True)
            if method == "laplace_scan" and "seconds" in row.get("forward", {}):
                fma = FMA_PER_NODE_STEP * 2 * B * N * H * D * S
                row["gfma_per_s"] = fma / row["forward"]["seconds"] / 1e9
                row["fraction_of_matmul"] = row["gfma_per_s"] / matmul
            rows.append(row)
            print(format_row(row))
        print("-" * len(header))

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"config": {"B": B, "H": H, "D": D, "S": S, "dtype": "float32",
                         "bilateral": True},
              "build": info, "torch": torch.__version__, "matmul_gfma_per_s": matmul,
              "rows": rows}
    (out / "bench_scan.json").write_text(json.dumps(result, indent=2))
    plot(rows, out / "bench_scan.png")
    print(f"\nwrote {out / 'bench_scan.json'} and {out / 'bench_scan.png'}")


def format_row(row):
    def ms(key):
        r = row.get(key, {})
        return f"{r['seconds'] * 1e3:9.1f}" if "seconds" in r else f"{'-':>9}"

    def mb(key):
        r = row.get(key, {})
        return f"{r['peak_bytes'] / 2**20:8.0f}" if "peak_bytes" in r else f"{'-':>8}"

    if "skipped" in row:
        return f"{row['N']:>7} | {row['method']:<13} | skipped: {row['skipped']}"
    gf = f"{row['gfma_per_s']:7.1f}" if "gfma_per_s" in row else f"{'':>7}"
    frac = f"{row['fraction_of_matmul'] * 100:7.0f}%" if "fraction_of_matmul" in row else ""
    return (f"{row['N']:>7} | {row['method']:<13} | {ms('forward')} | {ms('forward_backward'):>10} | "
            f"{mb('forward')} | {mb('forward_backward'):>10} | {gf} | {frac:>8}")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, color in (("laplace_scan", "C0"), ("fft", "C1"), ("sdpa", "C3")):
        for key, style, label in (("forward", "-o", "fwd"), ("forward_backward", "--s", "fwd+bwd")):
            pts = [(r["N"], r[key]) for r in rows
                   if r["method"] == method and "seconds" in r.get(key, {})]
            if not pts:
                continue
            n = [p[0] for p in pts]
            axes[0].loglog(n, [p[1]["seconds"] * 1e3 for p in pts], style, color=color,
                           label=f"{method} {label}")
            axes[1].loglog(n, [max(p[1]["peak_bytes"], 1) / 2**20 for p in pts], style,
                           color=color, label=f"{method} {label}")
    axes[0].set(xlabel="sequence length N", ylabel="time (ms)", title="time, B=1 H=8 D=64 S=32")
    axes[1].set(xlabel="sequence length N", ylabel="peak extra memory (MB)", title="memory")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
