"""Decoding benchmark: the time and memory of one generated token of a causal
language model (laplace_attn.DecoderLM: 4 layers, width 256, 4 heads) after a context
of n tokens, every model through the same decoding loop (model(token, cache=cache)):

- STLT (multiplicative mixer) with its recurrent cache, eagerly and as TorchScript
  (what laplace-attn-infer --generate runs), and the same model stepped by a
  plain-PyTorch complex recurrence (checked against the cached model first);
- STLT with the linear (key-value state) mixer and a short convolution;
- softmax attention with a preallocated key-value cache (F.scaled_dot_product_attention);
- Laplacian attention with the same key-value cache;
- STLT without a cache: the whole sequence again for every token (short contexts).

STLT caches are filled by a real prefill of n tokens (its rate is printed); the
key-value caches with random keys and values, since a softmax prefill of 128k tokens
is quadratic, and a step's cost does not depend on the values it reads. Each model
then decodes --repeats tokens in a row after the context; the median step is shown.
Also where the STLT step's time goes (torch.profiler).

Prints a table and writes bench_results/bench_decode.json and .png.

    .venv/bin/python scripts/bench_decode.py [--contexts 1024 8192 32768 131072]
        [--recompute-max 8192] [--repeats 40]
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import laplace_attn

VOCAB, WIDTH, LAYERS, HEADS, NODES = 256, 256, 4, 4, 16
MODELS = {  # name: DecoderLM attention and options
    "stlt multiplicative": ("stlt", {"num_nodes": NODES}),
    "stlt linear conv4": ("stlt", {"num_nodes": NODES, "mixer": "linear", "short_conv": 4}),
    "softmax, KV cache (SDPA)": ("softmax", {}),
    "laplacian, KV cache": ("laplacian", {}),
}


def make_model(name):
    torch.manual_seed(0)
    attention, options = MODELS[name]
    return laplace_attn.DecoderLM(VOCAB, WIDTH, LAYERS, HEADS, attention=attention,
                                  **options).eval()


def cache_bytes(cache, context):
    """Bytes a cache holds for ``context`` tokens (a key-value cache: those rows only)."""
    total = 0
    for layer in cache:
        for name, t in layer.items():
            if name in ("keys", "values"):
                total += t[:, :, :context].numel() * t.element_size()
            elif name != "padding" and name != "length":
                total += t.numel() * t.element_size()
    return total


def fill_kv_cache(cache, context):
    """Random keys and values for the first ``context`` positions, as after a prefill."""
    for layer in cache:
        layer["keys"][:, :, :context].normal_()
        layer["values"][:, :, :context].normal_()
        layer["length"].fill_(context)


def median_seconds(step, repeats, warmup=3):
    """Median time of ``repeats`` calls of ``step`` after ``warmup`` calls (TorchScript
    optimises after its first calls)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def decode_step(model, cache):
    """One decoding step of the loop every model goes through: a token, the cache."""
    token = torch.tensor([[ord("a")]])
    return lambda: model(token, cache=cache)


def recurrence_states(model):
    """Zero states for :func:`recurrence_step`, complex [B, H, S, D] per layer."""
    return [torch.zeros(1, HEADS, NODES, WIDTH // HEADS, dtype=torch.complex64)
            for _ in model.blocks]


def recurrence_step(model, token, states):
    """One token through the multiplicative-STLT DecoderLM in plain PyTorch: per layer
    F = a F + k v (complex, per node), y = W_o (q Re(sum_k c_k F_k))."""
    B, H, D = 1, HEADS, WIDTH // HEADS
    x = model.embed(token)
    for i, block in enumerate(model.blocks):
        layer = block.attn
        h = block.norm1(x)
        q, k, v = F.linear(h, layer.in_proj_weight, layer.in_proj_bias).chunk(3, dim=-1)
        decay, freq = layer.poles()
        pole = torch.polar(torch.exp(-decay), -freq)  # [H, S]
        c = layer._readout(layer.c_fwd, decay)
        c = torch.complex(c[..., 0], c[..., 1])  # [H, S, D]
        states[i] = pole[None, :, :, None] * states[i] + (k * v).view(B, H, 1, D)
        y = (c[None] * states[i]).real.sum(2).reshape(B, 1, WIDTH)
        x = x + layer.out_proj(q * y)
        x = x + block.mlp(block.norm2(x))
    return model.head(model.norm(x))


def check_recurrence(model):
    """Largest gap between the plain-PyTorch step and the cached model over 20 tokens."""
    cache, states = model.new_cache(1, 20), recurrence_states(model)
    tokens = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    gap = 0.0
    for t in range(20):
        token = tokens[:, t:t + 1]
        gap = max(gap, float((recurrence_step(model, token, states) -
                              model(token, cache=cache)).abs().max()))
    return gap


def where_the_time_goes(model, context, steps=50):
    """The STLT step's time by operator (self CPU time), and the rest (Python)."""
    cache = model.new_cache(1, context + 2 * steps + 8)
    model(torch.randint(0, VOCAB, (1, context)), cache=cache)
    step = decode_step(model, cache)
    wall = median_seconds(step, steps)
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6 / steps) for e in prof.key_averages()),
                 key=lambda kv: -kv[1])
    # The profiler adds its own cost per operator call, so the shares are approximate.
    return wall, ops


@torch.inference_mode()
def measure_context(n, args):
    rows = []
    extra = args.repeats + 8  # room for the decoded tokens after the context
    prompt = torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(n))
    for name in MODELS:
        model = make_model(name)
        runs = [(name, model)]
        if name == "stlt multiplicative":
            runs.append((name + ", TorchScript", torch.jit.script(model)))
        for label, runner in runs:
            cache = runner.new_cache(1, n + extra)
            row = {"context": n, "method": label}
            if name.startswith("stlt"):
                start = time.perf_counter()
                runner(prompt, cache=cache)
                row["prefill_tokens_per_s"] = n / (time.perf_counter() - start)
            else:
                fill_kv_cache(cache, n)
            row["cache_bytes"] = cache_bytes(cache, n)
            row["seconds_per_token"] = median_seconds(decode_step(runner, cache), args.repeats)
            rows.append(row)
        if name == "stlt multiplicative":
            states, token = recurrence_states(model), torch.tensor([[ord("a")]])
            rows.append({"context": n, "method": "stlt multiplicative, plain-PyTorch step",
                         "seconds_per_token": median_seconds(
                             lambda: recurrence_step(model, token, states), args.repeats)})
            if n <= args.recompute_max:
                whole = torch.cat([prompt, prompt[:, :1]], dim=1)
                rows.append({"context": n, "method": "stlt multiplicative, no cache",
                             "seconds_per_token": median_seconds(
                                 lambda: model(whole), max(3, args.repeats // 10), warmup=1)})
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = [(r["context"], r["seconds_per_token"] * 1e3) for r in rows
               if r["method"] == method]
        ax.loglog(*zip(*pts), "-o", color=f"C{i}", label=method)
    ax.set(xlabel="context (tokens before the new one)", ylabel="ms per token",
           title=f"one decode step, DecoderLM {LAYERS} layers, width {WIDTH}, B=1")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def summary(rows):
    """The ratios the design targets: a flat STLT step, its lead over softmax + KV cache,
    and the cache sizes."""
    def cell(method, n, key="seconds_per_token"):
        found = [r[key] for r in rows if r["method"] == method and r["context"] == n]
        return found[0] if found else None

    contexts = sorted({r["context"] for r in rows})
    lines = []
    for stlt in ("stlt multiplicative", "stlt multiplicative, TorchScript", "stlt linear conv4"):
        first, last = cell(stlt, contexts[0]), cell(stlt, contexts[-1])
        lines.append(f"{stlt}: step at {contexts[-1]:,} / at {contexts[0]:,} tokens = "
                     f"{last / first:.2f}")
        for n in contexts:
            sdpa = cell("softmax, KV cache (SDPA)", n)
            kv, own = cell("softmax, KV cache (SDPA)", n, "cache_bytes"), cell(stlt, n,
                                                                                "cache_bytes")
            lines.append(f"  at {n:>7,}: softmax + KV cache step / this step = "
                         f"{sdpa / cell(stlt, n):6.1f}x; KV cache / this cache = {kv / own:8.1f}x")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32768, 131072])
    parser.add_argument("--recompute-max", type=int, default=8192,
                        help="longest context for re-running the whole sequence per token")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--out", default="bench_results")
    args = parser.parse_args()

    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; torch {torch.__version__}")
    with torch.inference_mode():
        gap = check_recurrence(make_model("stlt multiplicative"))
    print(f"DecoderLM: {LAYERS} layers, width {WIDTH}, {HEADS} heads, {NODES} nodes, B=1, "
          f"float32, inference mode; plain-PyTorch step vs cached model over 20 tokens: max "
          f"|logit difference| {gap:.1e}\n")
    header = (f"{'context':>7} | {'method':<40} | {'ms/token':>9} | {'prefill tok/s':>13} | "
              f"{'cache MB':>9}")
    print(header)
    print("-" * len(header))
    rows = []
    for n in args.contexts:
        for row in measure_context(n, args):
            rows.append(row)
            prefill = (f"{row['prefill_tokens_per_s']:13,.0f}" if "prefill_tokens_per_s" in row
                       else f"{'':>13}")
            size = f"{row['cache_bytes'] / 2**20:9.3f}" if "cache_bytes" in row else f"{'':>9}"
            print(f"{n:>7} | {row['method']:<40} | {row['seconds_per_token'] * 1e3:9.3f} | "
                  f"{prefill} | {size}", flush=True)
        print("-" * len(header))
    lines = summary(rows)
    print("\n" + "\n".join(lines))

    with torch.inference_mode():
        wall, ops = where_the_time_goes(make_model("stlt multiplicative"), min(args.contexts))
    profiled = sum(t for _, t in ops)
    print(f"\nWhere an eager STLT step's {wall * 1e3:.3f} ms (median, unprofiled) go: "
          f"torch.profiler's self CPU time per step (the profiler slows every call a little)")
    for op, t in ops[:8]:
        print(f"  {op:<36} {t * 1e3:7.3f} ms")
    print(f"  {'all operators':<36} {profiled * 1e3:7.3f} ms; outside them (Python, "
          f"dispatch): {(wall - profiled) * 1e3:.3f} ms")

    out = Path(args.out)
    out.mkdir(exist_ok=True)
    result = {"config": {"vocab": VOCAB, "width": WIDTH, "layers": LAYERS, "heads": HEADS,
                         "nodes": NODES, "batch": 1},
              "build": info, "torch": torch.__version__, "rows": rows, "summary": lines,
              "profile": {"wall_seconds": wall, "ops": ops[:20]}}
    (out / "bench_decode.json").write_text(json.dumps(result, indent=2))
    plot(rows, out / "bench_decode.png")
    print(f"\nwrote {out / 'bench_decode.json'} and {out / 'bench_decode.png'}")


if __name__ == "__main__":
    main()
