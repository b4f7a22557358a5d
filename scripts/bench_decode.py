"""Decoding benchmark: the time of one generated token through a causal STLTAttention
layer with a cache (new_cache / cache=), against re-running the layer on the whole
prefix, a plain-PyTorch recurrence step of the same math, and softmax attention with a
preallocated key-value cache (F.scaled_dot_product_attention over the cached keys and
values, with the same projections), as the prefix grows. Also the prefill rate and each
cache's size.

Prints a table and writes bench_results/bench_decode.json and .png.

    .venv/bin/python scripts/bench_decode.py [--prefixes 128 1024 8192 65536]
        [--recompute-max 8192] [--repeats 50]
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import laplace_attn

B, E, H, S = 1, 512, 8, 16
D = E // H


def median_seconds(step, repeats):
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def make_layer(mixer):
    torch.manual_seed(0)
    return laplace_attn.STLTAttention(E, H, num_nodes=S, causal=True, mixer=mixer,
                                      batch_first=True).eval()


def cache_bytes(cache):
    return sum(t.numel() * t.element_size() for t in cache.values())


def recurrence_step(layer, x, state):
    """One token of the multiplicative mixer as a complex recurrence in plain PyTorch:
    F = a F + k v, y = W_o (q Re(sum_k c_k F_k)). state: complex [B, H, S, D]."""
    q, k, v = F.linear(x, layer.in_proj_weight, layer.in_proj_bias).chunk(3, dim=-1)
    decay, freq = layer.poles()
    pole = torch.polar(torch.exp(-decay), -freq)  # [H, S]
    c = layer._readout(layer.c_fwd, decay)
    c = torch.complex(c[..., 0], c[..., 1])  # [H, S, D]
    u = (k * v).view(B, H, 1, D)
    state = pole[None, :, :, None] * state + u
    y = (c[None] * state).real.sum(2).reshape(B, 1, E)
    return layer.out_proj(q * y), state


def softmax_kv_step(mha_weight, mha_bias, out_proj, x, keys, values):
    """One token of softmax attention over a preallocated key-value cache: keys and
    values [B, H, n + 1, D] hold the prefix, the new token's key and value go in the
    last slot (as decoding libraries write into a preallocated cache)."""
    q, k, v = F.linear(x, mha_weight, mha_bias).chunk(3, dim=-1)
    q = q.view(B, 1, H, D).transpose(1, 2)
    keys[:, :, -1:] = k.view(B, 1, H, D).transpose(1, 2)
    values[:, :, -1:] = v.view(B, 1, H, D).transpose(1, 2)
    z = F.scaled_dot_product_attention(q, keys, values)
    return out_proj(z.transpose(1, 2).reshape(B, 1, E))


@torch.inference_mode()
def measure_prefix(n, args):
    rows = []
    x = torch.randn(B, n + 1, E)
    token = x[:, n:]
    for mixer in ("multiplicative", "linear"):
        layer = make_layer(mixer)
        cache = layer.new_cache(B)
        prefix = x[:, :n]
        start = time.perf_counter()
        layer(prefix, prefix, prefix, cache=cache)
        prefill = time.perf_counter() - start
        saved = {name: t.clone() for name, t in cache.items()}

        def step():
            for name, t in saved.items():  # every step decodes the same token
                cache[name].copy_(t)
            layer(token, token, token, cache=cache)

        rows.append({"N": n, "method": f"stlt {mixer}, cache",
                     "seconds_per_token": median_seconds(step, args.repeats),
                     "prefill_tokens_per_s": n / prefill, "cache_bytes": cache_bytes(cache)})
        if n <= args.recompute_max:
            rows.append({"N": n, "method": f"stlt {mixer}, no cache",
                         "seconds_per_token": median_seconds(
                             lambda: layer(x, x, x), max(3, args.repeats // 10))})
        if mixer == "multiplicative":
            state0 = torch.zeros(B, H, S, D, dtype=torch.complex64)
            rows.append({"N": n, "method": "stlt multiplicative, plain-PyTorch step",
                         "seconds_per_token": median_seconds(
                             lambda: recurrence_step(layer, token, state0), args.repeats)})
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
    keys, values = torch.randn(B, H, n + 1, D), torch.randn(B, H, n + 1, D)
    rows.append({"N": n, "method": "softmax, KV cache (SDPA)",
                 "seconds_per_token": median_seconds(
                     lambda: softmax_kv_step(mha.in_proj_weight, mha.in_proj_bias, mha.out_proj,
                                             token, keys, values), args.repeats),
                 "cache_bytes": 2 * keys[:, :, :n].numel() * keys.element_size()})
    return rows


@torch.inference_mode()
def check_recurrence():
    """The plain-PyTorch step reproduces the cached layer, token by token."""
    layer = make_layer("multiplicative")
    x = torch.randn(B, 20, E)
    cache = layer.new_cache(B)
    state = torch.zeros(B, H, S, D, dtype=torch.complex64)
    gap = 0.0
    for t in range(20):
        token = x[:, t:t + 1]
        want = layer(token, token, token, cache=cache)[0]
        got, state = recurrence_step(layer, token, state)
        gap = max(gap, float((got - want).abs().max()))
    return gap


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = [(r["N"], r["seconds_per_token"] * 1e3) for r in rows if r["method"] == method]
        ax.loglog(*zip(*pts), "-o", color=f"C{i}", label=method)
    ax.set(xlabel="tokens before the new one", ylabel="ms per token",
           title=f"one decode step, B={B} E={E} H={H} S={S}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, nargs="+", default=[128, 1024, 8192, 65536])
    parser.add_argument("--recompute-max", type=int, default=8192,
                        help="longest prefix for re-running the whole sequence per token")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default="bench_results")
    args = parser.parse_args()

    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; torch {torch.__version__}")
    print(f"B={B}, E={E}, H={H}, S={S}, float32, inference mode; plain-PyTorch step vs cached "
          f"layer over 20 tokens: max |difference| {check_recurrence():.1e}\n")
    header = (f"{'prefix':>7} | {'method':<40} | {'ms/token':>9} | {'prefill tok/s':>13} | "
              f"{'cache MB':>8}")
    print(header)
    print("-" * len(header))
    rows = []
    for n in args.prefixes:
        for row in measure_prefix(n, args):
            rows.append(row)
            prefill = (f"{row['prefill_tokens_per_s']:13,.0f}" if "prefill_tokens_per_s" in row
                       else f"{'':>13}")
            size = f"{row['cache_bytes'] / 2**20:8.2f}" if "cache_bytes" in row else f"{'':>8}"
            print(f"{n:>7} | {row['method']:<40} | {row['seconds_per_token'] * 1e3:9.3f} | "
                  f"{prefill} | {size}", flush=True)
        print("-" * len(header))

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"config": {"B": B, "E": E, "H": H, "S": S}, "build": info,
              "torch": torch.__version__, "rows": rows}
    (out / "bench_decode.json").write_text(json.dumps(result, indent=2))
    plot(rows, out / "bench_decode.png")
    print(f"\nwrote {out / 'bench_decode.json'} and {out / 'bench_decode.png'}")


if __name__ == "__main__":
    main()
