"""A small vision transformer on scikit-learn's bundled handwritten digits (real
8x8 images, each pixel a token): softmax attention against Laplacian attention
(Nystrom and exact), test accuracy over several seeds.

    .venv/bin/python scripts/train_digits.py [--seeds 0 1 2] [--epochs 40]
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import laplace_attn

KINDS = {
    "softmax": None,
    "laplacian nystrom": dict(num_landmarks=16),
    "laplacian exact": dict(exact=True),
}


class PixelTransformer(nn.Module):
    def __init__(self, width, layers, heads, attention_kwargs):
        super().__init__()
        self.embed = nn.Linear(1, width)
        self.pos = nn.Parameter(torch.randn(64, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        if attention_kwargs is not None:
            laplace_attn.swap_attention(self.blocks, kind="laplacian", **attention_kwargs)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 10))

    def forward(self, pixels):  # [B, 64] in [0, 1]
        x = self.embed(pixels[..., None]) + self.pos
        return self.head(self.blocks(x).mean(dim=1))


def load(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed,
                                              stratify=y)
    return x_tr, x_te, y_tr, y_te


def train(kind, seed, args):
    torch.manual_seed(seed)
    x_tr, x_te, y_tr, y_te = load(seed)
    model = PixelTransformer(args.width, args.layers, args.heads, KINDS[kind])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * ((len(x_tr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), args.batch):
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_te).argmax(-1) == y_te).float().mean().item()
    return {"accuracy": accuracy, "train_seconds": time.perf_counter() - start}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--out", type=Path, default=Path("bench_results/digits.json"))
    args = p.parse_args()

    results = {}
    print(f"digits (8x8, 64 pixel tokens), {args.epochs} epochs, width {args.width}, "
          f"{args.layers} layers, seeds {args.seeds}")
    for kind in args.kinds:
        runs = [train(kind, seed, args) for seed in args.seeds]
        accs = [r["accuracy"] for r in runs]
        results[kind] = {"runs": runs, "mean": statistics.mean(accs),
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
        print(f"{kind:<20} test accuracy {100 * results[kind]['mean']:.2f}% "
              f"± {100 * results[kind]['std']:.2f} ({', '.join(f'{100 * a:.1f}' for a in accs)}); "
              f"{statistics.mean(r['train_seconds'] for r in runs):.0f} s per run", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": {k: (str(v) if isinstance(v, Path) else v)
                                               for k, v in vars(args).items()},
                                    "results": results}, indent=2))


if __name__ == "__main__":
    main()
