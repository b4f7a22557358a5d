"""Packed versus padded batches: a batch of sequences whose lengths are drawn
uniformly from a range (16 from 64-4096 by default), through one attention layer
(width 256, 4 heads, float32), three ways:

- padded: one [B, max length] call with a key_padding_mask (what a padding collator
  gives);
- packed: one [1, total] call with cu_seqlens (what a packing collator gives; for
  SDPA, which has no varlen form on the CPU, a block-diagonal causal mask);
- a loop over the sequences, one call each (the plain-PyTorch way to avoid padding).

Layers: STLTAttention (causal scan), LaplacianAttention exact causal (the fused
O(N) memory kernel), LaplacianAttention bidirectional Nyström (64 landmarks per
sequence), and F.scaled_dot_product_attention causal (padded with a mask; per
sequence in the loop) as the softmax baseline. Forward and forward + backward,
each measurement in its own process (time: median of --repeats; memory: the growth
of the resident set during the first call). Before timing, the packed output is
checked against the loop's.

Prints a table and writes bench_results/bench_packed.json and .png.

    .venv/bin/python scripts/bench_packed.py [--sequences 16] [--lengths 64 4096]
        [--repeats 3]
"""
import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

import laplace_attn  # noqa: E402
from laplace_attn.packing import sequence_ids  # noqa: E402

WIDTH, HEADS = 256, 4
LAYERS = ["stlt causal", "laplacian exact causal", "laplacian nystrom", "sdpa causal"]
LAYOUTS = ["padded", "packed", "loop"]


def draw_lengths(count, low, high, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (count,), generator=g).tolist()


class SDPALayer(torch.nn.Module):
    """Softmax attention with the same projections, F.scaled_dot_product_attention."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.out = torch.nn.Linear(WIDTH, WIDTH)

    def forward(self, x, key_padding_mask=None, cu_seqlens=None):
        B, N, _ = x.shape
        q, k, v = (t.view(B, N, HEADS, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        causal = torch.ones(N, N, dtype=torch.bool).tril()
        if key_padding_mask is not None:
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=causal & ~key_padding_mask[:, None, None])
        elif cu_seqlens is not None:
            # Packed: a block-diagonal causal mask, N x N (plain PyTorch has no varlen).
            seq = sequence_ids(cu_seqlens, N)
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=causal & (seq[:, None] == seq[None, :]))
        else:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(z.transpose(1, 2).reshape(B, N, WIDTH))


def make_layer(name):
    torch.manual_seed(0)
    if name == "stlt causal":
        return laplace_attn.STLTAttention(WIDTH, HEADS, causal=True, batch_first=True)
    if name == "laplacian exact causal":
        return laplace_attn.LaplacianAttention(WIDTH, HEADS, exact=True, batch_first=True)
    if name == "laplacian nystrom":
        return laplace_attn.LaplacianAttention(WIDTH, HEADS, num_landmarks=64, batch_first=True)
    return SDPALayer()


def call(layer, name, x, key_padding_mask=None, cu_seqlens=None):
    if name == "sdpa causal":
        return layer(x, key_padding_mask, cu_seqlens)
    causal = name != "laplacian nystrom"
    kwargs = dict(cu_seqlens=cu_seqlens) if cu_seqlens is not None else {}
    return layer(x, x, x, key_padding_mask=key_padding_mask, is_causal=causal,
                 need_weights=False, **kwargs)[0]


def make_run(name, layout, lengths):
    """The step that runs `name` on the sequences in `layout`."""
    layer = make_layer(name)
    g = torch.Generator().manual_seed(1)
    sequences = [torch.randn(n, WIDTH, generator=g) for n in lengths]
    if layout == "padded":
        longest = max(lengths)
        x = torch.zeros(len(lengths), longest, WIDTH)
        pad = torch.ones(len(lengths), longest, dtype=torch.bool)
        for i, s in enumerate(sequences):
            x[i, :len(s)] = s
            pad[i, :len(s)] = False
        return layer, lambda: call(layer, name, x, key_padding_mask=pad)
    if layout == "packed":
        x, cu = laplace_attn.pack_sequences(sequences)
        return layer, lambda: call(layer, name, x, cu_seqlens=cu)
    return layer, lambda: [call(layer, name, s[None]) for s in sequences]


# SDPA with a mask may form the [B, H, N, N] scores; skip it where they would not fit.
SDPA_SCORE_LIMIT_BYTES = 8 * 2**30


def skip_reason(name, layout, lengths):
    if name != "sdpa causal" or layout == "loop":
        return None
    rows = 1 if layout == "packed" else len(lengths)
    length = sum(lengths) if layout == "packed" else max(lengths)
    need = rows * HEADS * length * length * 4
    if need <= SDPA_SCORE_LIMIT_BYTES:
        return None
    return f"its {rows} x {HEADS} x {length}^2 float32 scores would take {need / 2**30:.0f} GiB"


def check_packed_equals_loop(lengths):
    """Largest |packed - loop| per layer. (Nystrom: a sequence shorter than its 64
    landmarks is exact alone and a landmark per token packed, so they differ.)"""
    gaps = {}
    for name in LAYERS:
        if skip_reason(name, "packed", lengths):
            continue
        _, packed = make_run(name, "packed", lengths)
        _, loop = make_run(name, "loop", lengths)
        with torch.no_grad():
            gaps[name] = (packed()[0] - torch.cat([y[0] for y in loop()])).abs().max().item()
    return gaps


def run_method(method, n, backward):
    """benchlib worker: method = "layer|layout|lengths,comma,separated"."""
    name, layout, lengths = method.split("|")
    layer, step = make_run(name, layout, [int(v) for v in lengths.split(",")])
    if not backward:
        def forward():
            with torch.no_grad():
                step()
        return forward

    def forward_backward():
        out = step()
        loss = sum(y.square().mean() for y in out) if isinstance(out, list) else out.square().mean()
        loss.backward()
        layer.zero_grad(set_to_none=True)
    return forward_backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs=2, default=[64, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        benchlib.run_worker(args.worker, run_method)
        return

    lengths = draw_lengths(args.sequences, *args.lengths)
    total, longest = sum(lengths), max(lengths)
    print(f"{len(lengths)} sequences, lengths {min(lengths)}-{longest} (seed 0): {total} tokens, "
          f"padded to {len(lengths)} x {longest} = {len(lengths) * longest} "
          f"({total / (len(lengths) * longest):.0%} real); torch threads "
          f"{torch.get_num_threads()}, {laplace_attn.build_info()['simd']}")
    gaps = check_packed_equals_loop(lengths)
    for name, gap in gaps.items():
        print(f"  {name}: max |packed - one call per sequence| = {gap:.2e}")

    spec = ",".join(map(str, lengths))
    rows = []
    header = (f"{'layer':<24} | {'layout':<7} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | "
              f"{'fwd MB':>8} | {'fwd+bwd MB':>10} | {'fwd+bwd / padded':>16}")
    print(header + "\n" + "-" * len(header))
    for name in LAYERS:
        padded_time = None
        for layout in LAYOUTS:
            method = f"{name}|{layout}|{spec}"
            row = {"layer": name, "layout": layout}
            reason = skip_reason(name, layout, lengths)
            if reason:
                print(f"{name:<24} | {layout:<7} | skipped: {reason}")
                rows.append({**row, "skipped": reason, "forward": {}, "forward_backward": {}})
                continue
            for key, backward in (("forward", 0), ("forward_backward", 1)):
                row[key] = benchlib.measure_in_subprocess(__file__, method, total, backward,
                                                          args.repeats)
            both = row["forward_backward"].get("seconds")
            if layout == "padded":
                padded_time = both
            ratio = (f"{both / padded_time:16.2f}" if both and padded_time else f"{'-':>16}")
            row["time_vs_padded"] = both / padded_time if both and padded_time else None
            print(f"{name:<24} | {layout:<7} | {benchlib.cell_ms(row['forward'])} | "
                  f"{benchlib.cell_ms(row['forward_backward'], 10)} | "
                  f"{benchlib.cell_mb(row['forward'])} | "
                  f"{benchlib.cell_mb(row['forward_backward'], 10)} | {ratio}")
            rows.append(row)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"lengths": lengths, "threads": torch.get_num_threads(),
              "packed_minus_loop": gaps, "rows": rows}
    (args.out / "bench_packed.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "bench_packed.png", lengths)
    print(f"wrote {args.out / 'bench_packed.json'} and {args.out / 'bench_packed.png'}")


def plot(rows, path, lengths):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.27
    for j, layout in enumerate(LAYOUTS):
        for ax, key, scale, label in ((axes[0], "seconds", 1e3, "forward + backward (ms)"),
                                      (axes[1], "peak_bytes", 2**-20, "peak extra memory (MB)")):
            values = [next((r["forward_backward"].get(key, 0) * scale for r in rows
                            if r["layer"] == name and r["layout"] == layout), 0)
                      for name in LAYERS]
            ax.bar([i + (j - 1) * width for i in range(len(LAYERS))], values, width,
                   label=layout, color=f"C{j}")
            ax.set_ylabel(label)
    for ax in axes:
        ax.set_xticks(range(len(LAYERS)), [n.replace(" ", "\n", 1) for n in LAYERS], fontsize=8)
        ax.set_yscale("log")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{len(lengths)} sequences of {min(lengths)}-{max(lengths)} tokens: "
                 "padded vs packed (cu_seqlens) vs one call each")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
