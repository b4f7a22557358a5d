"""Benchmark of the Laplacian-attention operators against a plain-PyTorch
composition of the same math (torch.cdist(p=1), exp, torch.linalg.pinv, matmuls)
and against F.scaled_dot_product_attention.

Each measurement runs in its own process (see benchlib.py). Prints two tables and
writes bench_results/bench_laplacian.json and .png.

    .venv/bin/python scripts/bench_laplacian.py [--lengths 1024 4096 ...]
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import benchlib

B, H, D, LANDMARKS = 1, 8, 64, 64
KERNEL_N, KERNEL_M = 4096, 64


def inputs(N, requires_grad, M=None):
    g = torch.Generator().manual_seed(0)
    M = N if M is None else M
    q = torch.randn(B, H, N, D, generator=g)
    k = torch.randn(B, H, M, D, generator=g)
    v = torch.randn(B, H, M, D, generator=g)
    lam = torch.full((H,), 1.0 / D ** 0.5)
    return [t.requires_grad_(requires_grad) for t in (q, k, v, lam)]


def composition_kernel(x1, x2, lam):
    return torch.exp(-lam[None, :, None, None] * torch.cdist(x1, x2, p=1))


def composition_nystrom(q, k, v, lam, m=LANDMARKS):
    """The same Nystrom math in plain PyTorch, with torch.linalg.pinv."""
    N = q.shape[2]
    q_l = q.reshape(B, H, m, N // m, D).mean(-2)
    k_l = k.reshape(B, H, m, N // m, D).mean(-2)

    def norm(kern):
        return kern / kern.sum(-1, keepdim=True)

    c_q = norm(composition_kernel(q, k_l, lam))
    w = norm(composition_kernel(q_l, k_l, lam))
    c_k = norm(composition_kernel(q_l, k, lam))
    return c_q @ (torch.linalg.pinv(w) @ (c_k @ v))


def run_method(method, N, backward):
    import laplace_attn

    if method.startswith("kernel"):
        x1, x2, _, lam = inputs(KERNEL_N, backward, M=KERNEL_M)
        fn = laplace_attn.laplacian_kernel if method == "kernel:fused" else composition_kernel
        args = (x1, x2, lam)
    else:
        q, k, v, lam = inputs(N, backward)
        fn = {
            "exact": lambda: laplace_attn.laplacian_attention(q, k, v, lam),
            "nystrom": lambda: laplace_attn.nystrom_attention(q, k, v, LANDMARKS, "laplacian",
                                                              lam),
            "composition": lambda: composition_nystrom(q, k, v, lam),
            "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        }[method]
        args = ()

    def step():
        out = fn(*args)
        if backward:
            out.backward(torch.ones_like(out))
    return step


LIMITS = {  # longest N measured (forward, forward+backward): the quadratic ones
    "exact": (8192, 8192),
    "sdpa": (16384, 8192),
}


def measure(method, N, backward):
    fwd_max, both_max = LIMITS.get(method, (1 << 30, 1 << 30))
    if N > (both_max if backward else fwd_max):
        return {"skipped": "quadratic"}
    repeats = 1 if N >= 8192 and method in LIMITS else 3
    return benchlib.measure_in_subprocess(__file__, method, N, int(backward), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[1024, 2048, 4096, 8192, 16384, 65536])
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        benchlib.run_worker(args.worker, run_method)
        return

    import laplace_attn
    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; torch {torch.__version__}; float32\n")

    kernel_rows = {m: {"forward": measure(m, KERNEL_N, False),
                       "forward_backward": measure(m, KERNEL_N, True)}
                   for m in ("kernel:fused", "kernel:composition")}
    print(f"laplacian_kernel, B={B} H={H} N={KERNEL_N} M={KERNEL_M} D={D}")
    print(f"{'method':<20} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | {'fwd MB':>8} | "
          f"{'fwd+bwd MB':>10}")
    for m, r in kernel_rows.items():
        print(f"{m:<20} | {benchlib.cell_ms(r['forward'])} | "
              f"{benchlib.cell_ms(r['forward_backward'], 10)} | {benchlib.cell_mb(r['forward'])} "
              f"| {benchlib.cell_mb(r['forward_backward'], 10)}")
    fused, comp = kernel_rows["kernel:fused"], kernel_rows["kernel:composition"]
    if "seconds" in fused["forward_backward"] and "seconds" in comp["forward_backward"]:
        print(f"fused speed-up, forward+backward: "
              f"{comp['forward_backward']['seconds'] / fused['forward_backward']['seconds']:.1f}x")

    print(f"\nattention, B={B} H={H} D={D}, Nystrom landmarks m={LANDMARKS}")
    header = (f"{'N':>7} | {'method':<12} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | {'fwd MB':>8} | "
              f"{'fwd+bwd MB':>10}")
    print(header)
    print("-" * len(header))
    rows = []
    for N in args.lengths:
        for method in ("nystrom", "exact", "composition", "sdpa"):
            row = {"N": N, "method": method, "forward": measure(method, N, False),
                   "forward_backward": measure(method, N, True)}
            rows.append(row)
            print(f"{N:>7} | {method:<12} | {benchlib.cell_ms(row['forward'])} | "
                  f"{benchlib.cell_ms(row['forward_backward'], 10)} | "
                  f"{benchlib.cell_mb(row['forward'])} | "
                  f"{benchlib.cell_mb(row['forward_backward'], 10)}", flush=True)
        print("-" * len(header))

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "bench_laplacian.json").write_text(json.dumps(
        {"config": {"B": B, "H": H, "D": D, "landmarks": LANDMARKS, "dtype": "float32"},
         "build": info, "torch": torch.__version__, "kernel": kernel_rows, "attention": rows},
        indent=2))
    benchlib.plot_time_and_memory(rows, ("nystrom", "exact", "composition", "sdpa"),
                                  out / "bench_laplacian.png", f"B={B} H={H} D={D} m={LANDMARKS}")
    print(f"\nwrote {out / 'bench_laplacian.json'} and {out / 'bench_laplacian.png'}")


if __name__ == "__main__":
    main()
