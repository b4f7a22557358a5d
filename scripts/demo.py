"""laplace_attn demo: the fused Laplace scan (the STLT core) on a long sequence.

Checks the scan against an independent FFT convolution in float64 and times it
next to softmax attention (PyTorch's scaled_dot_product_attention) at the same
batch, heads, length and head width. Everything it needs is built in.
"""
import argparse
import time

import torch
import torch.nn.functional as F

import laplace_attn
from laplace_attn.reference import laplace_scan_fft


def best_time(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scan_inputs(N, H, D, S, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Half-lives from a few steps to thousands of steps, as an STLT layer learns.
    decay = torch.logspace(-3.5, -0.5, S, dtype=torch.float64).repeat(H, 1)
    freq = torch.rand(H, S, generator=g, dtype=torch.float64) * 0.5
    c_fwd = torch.randn(H, S, D, 2, generator=g, dtype=torch.float64) / S
    c_bwd = torch.randn(H, S, D, 2, generator=g, dtype=torch.float64) / S
    u = torch.randn(1, N, H, D, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (u, decay, freq, c_fwd, c_bwd)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=65536, help="sequence length to check")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64, help="channels per head")
    parser.add_argument("--nodes", type=int, default=32, help="Laplace nodes per head")
    args = parser.parse_args()
    H, D, S = args.heads, args.dim, args.nodes

    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}: CPU kernels use {info['simd']}, "
          f"{info['num_threads']} threads (OpenMP {'on' if info['openmp'] else 'off'}), "
          f"CUDA {'on' if info['cuda'] else 'off'}")

    N = args.length
    u, decay, freq, c_fwd, c_bwd = scan_inputs(N, H, D, S, torch.float32)
    start = time.perf_counter()
    y, _, _ = laplace_attn.laplace_scan(u, decay, freq, c_fwd, c_bwd)
    elapsed = time.perf_counter() - start
    ref = laplace_scan_fft(*(t.double() for t in (u, decay, freq, c_fwd, c_bwd)))
    err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
    print(f"\nbilateral scan, N={N}, H={H}, D={D}, S={S}, float32: {elapsed * 1e3:.1f} ms")
    print(f"max error against a float64 FFT convolution: {err:.2e} (relative to max |y|)")
    if not err < 1e-4:
        raise SystemExit("the scan disagrees with the reference")

    print(f"\nforward time, B=1, H={H}, D={D} (S={S} nodes, bilateral), float32:")
    print(f"{'N':>7} {'laplace_scan':>14} {'SDPA':>12} {'speed-up':>9}")
    for n in (1024, 4096, 16384):
        u, decay, freq, c_fwd, c_bwd = scan_inputs(n, H, D, S, torch.float32)
        q = torch.randn(1, H, n, D)
        t_scan = best_time(lambda: laplace_attn.laplace_scan(u, decay, freq, c_fwd, c_bwd))
        t_sdpa = best_time(lambda: F.scaled_dot_product_attention(q, q, q), repeats=1)
        print(f"{n:>7} {t_scan * 1e3:>11.1f} ms {t_sdpa * 1e3:>9.1f} ms {t_sdpa / t_scan:>8.1f}x")


if __name__ == "__main__":
    main()
