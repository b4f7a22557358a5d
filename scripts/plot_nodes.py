"""Draws what an STLT model learned: each layer's kernels K(t) per head (mean over
channels) and every node's half-life against its period.

    .venv/bin/python scripts/train_charlm.py --data FILE --save ckpt.pt
    .venv/bin/python scripts/plot_nodes.py ckpt.pt --out nodes.png
"""
import argparse
import math
from argparse import Namespace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from train_charlm import build_model  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="written by train_charlm.py --save")
    p.add_argument("--out", type=Path, default=Path("bench_results/nodes.png"))
    p.add_argument("--length", type=int, default=None, help="lags to draw (default: context)")
    args = p.parse_args()

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    train_args = Namespace(**ckpt["args"])
    model = build_model(len(ckpt["vocab"]), train_args)
    model.load_state_dict(ckpt["state"])
    layers = model.stlt_layers()
    if not layers:
        raise SystemExit(f"{args.checkpoint} has no STLT layers (attention = "
                         f"{train_args.attention})")
    length = args.length or train_args.context

    fig, axes = plt.subplots(len(layers), 2, figsize=(11, 2.8 * len(layers)), squeeze=False)
    for i, layer in enumerate(layers):
        k_fwd, k_bwd = layer.kernel(length)
        t = torch.arange(length)
        for h in range(layer.num_heads):
            axes[i, 0].plot(t, k_fwd[h].mean(0), label=f"head {h}")
            if layer.c_bwd is not None:
                axes[i, 0].plot(-t, k_bwd[h].mean(0), color=f"C{h}")
        axes[i, 0].set(title=f"layer {i}: K(t), mean over channels", xlabel="lag t (steps)")
        axes[i, 0].legend(fontsize=7)
        rows = layer.describe_nodes()
        half = [r["half_life"] for r in rows]
        period = [min(r["period"], 1e5) for r in rows]
        colors = [f"C{r['head']}" for r in rows]
        axes[i, 1].scatter(half, period, c=colors, s=14)
        axes[i, 1].set(xscale="log", yscale="log", xlabel="half-life (steps)",
                       ylabel="period (steps)", title=f"layer {i}: nodes")
        print(f"layer {i}: half-lives {min(half):.1f} to {max(half):.1f} steps, "
              f"median {sorted(half)[len(half) // 2]:.1f}; "
              f"periods from {min(period):.1f} steps "
              f"({sum(p < 2 * math.pi * 100 for p in period)} of {len(rows)} under 628)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
