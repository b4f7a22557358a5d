"""Character-level language model on any text file, with the attention chosen by
flag: softmax (nn.MultiheadAttention), STLT (laplace_attn.STLTAttention) or
Laplacian (laplace_attn.LaplacianAttention; causal, so the exact operator).

Prints and saves (JSON) validation bits per character, training tokens/s, peak
memory and, for adaptive STLT, S_eff (mean active nodes per head).

    .venv/bin/python scripts/train_charlm.py --data FILE --attention stlt --steps 300
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import laplace_attn

ATTENTIONS = ("softmax", "stlt", "stlt-adaptive", "laplacian")


def default_text() -> Path:
    # Text every Python installation has: the standard library's own sources.
    return Path(json.__file__).with_name("decoder.py")


class CharLM(nn.Module):
    def __init__(self, vocab, width, layers, heads, context, attention, nodes, mixer,
                 lambda_mask=1e-3, gate_init=2.0, target_nodes=None, layer_options=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(context, width))
        # Token and position embeddings on the same scale, so softmax attention can
        # find positions (STLT needs none: the scan itself is ordered).
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        # layer_options: further keyword arguments of the new attention layers.
        options = layer_options or {}
        if attention == "laplacian":
            laplace_attn.swap_attention(self.blocks, kind="laplacian", **options)
        elif attention != "softmax":
            laplace_attn.swap_attention(self.blocks, num_nodes=nodes, causal=True, mixer=mixer,
                                        adaptive=attention == "stlt-adaptive",
                                        expected_length=context, lambda_mask=lambda_mask,
                                        gate_init=gate_init, target_nodes=target_nodes, **options)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context),
                             persistent=False)

    def stlt_layers(self):
        return [m for m in self.modules() if isinstance(m, laplace_attn.STLTAttention)]

    def forward(self, idx):
        n = idx.shape[1]
        x = self.embed(idx) + self.pos[:n]
        x = self.blocks(x, mask=self.mask[:n, :n], is_causal=True)
        return self.head(self.norm(x))


def build_model(vocab, args):
    return CharLM(vocab, args.width, args.layers, args.heads, args.context, args.attention,
                  args.nodes, args.mixer, getattr(args, "lambda_mask", 1e-3),
                  getattr(args, "gate_init", 2.0), getattr(args, "target_nodes", None))


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def batches(data, batch, context, generator):
    starts = torch.randint(0, len(data) - context - 1, (batch,), generator=generator)
    x = torch.stack([data[s:s + context] for s in starts])
    y = torch.stack([data[s + 1:s + context + 1] for s in starts])
    return x, y


@torch.no_grad()
def evaluate(model, data, args, generator):
    model.eval()
    total, count = 0.0, 0
    for _ in range(args.eval_batches):
        x, y = batches(data, args.batch, args.context, generator)
        logits = model(x)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count / math.log(2)


def progress(step, total, loss, tokens_per_s):
    width = 30
    done = int(width * step / total)
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total} "
                     f"loss {loss:.3f} {tokens_per_s:,.0f} tok/s")
    sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="text file (default: a source file of Python's standard library)")
    p.add_argument("--attention", choices=ATTENTIONS, default="stlt")
    p.add_argument("--mixer", default="multiplicative",
                   choices=("plain", "gated", "multiplicative", "linear"))
    p.add_argument("--nodes", type=int, default=32)
    p.add_argument("--lambda-mask", type=float, default=1e-3,
                   help="weight of the active-node penalty (stlt-adaptive)")
    p.add_argument("--gate-init", type=float, default=2.0,
                   help="initial gate logit (stlt-adaptive); nodes start on")
    p.add_argument("--target-nodes", type=int, default=None,
                   help="node budget per head (stlt-adaptive): penalise only active nodes above it")
    p.add_argument("--gate-lr-mult", type=float, default=10.0,
                   help="learning-rate multiplier for the gate logits (stlt-adaptive), so a "
                        "short run can move them across the threshold")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    p.add_argument("--save", type=Path, default=None,
                   help="checkpoint for scripts/plot_nodes.py (model, arguments, vocabulary)")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    path = args.data or default_text()
    text = path.read_text(encoding="utf-8", errors="replace")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    if len(val) <= args.context + 1:
        raise SystemExit(f"{path} is too short for context {args.context}")

    model = build_model(len(chars), args)
    gates = [q for layer in model.stlt_layers() for q in layer.gate_parameters()]
    others = [q for q in model.parameters() if not any(q is g for g in gates)]
    groups = [{"params": others}]
    if gates:
        groups.append({"params": gates, "lr": args.lr * args.gate_lr_mult, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g.get("lr", args.lr) for g in groups],
                                                total_steps=args.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    stlt = model.stlt_layers()
    tokens, train_time, loss_value = 0, 0.0, float("nan")
    for step in range(1, args.steps + 1):
        for layer in stlt:
            if layer.adaptive:
                layer.anneal_temperature(step, args.steps, 1.0, 0.1)
        x, y = batches(train, args.batch, args.context, gen)
        start = time.perf_counter()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        total = loss + sum(layer.regularization_loss() for layer in stlt if layer.adaptive)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        train_time += time.perf_counter() - start
        tokens += x.numel()
        loss_value = loss.item()
        if step % 10 == 0 or step == args.steps:
            progress(step, args.steps, loss_value, tokens / train_time)
    sys.stderr.write("\n")

    val_bpc = evaluate(model, val, args, torch.Generator().manual_seed(1234))
    s_eff = [layer.s_eff() for layer in stlt if layer.adaptive]
    result = {
        "data": str(path), "attention": args.attention, "mixer": args.mixer,
        "nodes": args.nodes, "lambda_mask": args.lambda_mask, "gate_init": args.gate_init,
        "target_nodes": args.target_nodes, "gate_lr_mult": args.gate_lr_mult,
        "width": args.width, "layers": args.layers, "heads": args.heads,
        "context": args.context, "batch": args.batch, "steps": args.steps, "seed": args.seed,
        "parameters": sum(q.numel() for q in model.parameters()),
        "final_train_loss": loss_value, "val_bpc": val_bpc,
        "train_tokens_per_s": tokens / train_time, "peak_rss_mib": peak_rss_mib(),
        "s_eff": sum(s_eff) / len(s_eff) if s_eff else None,
    }
    print(json.dumps(result, indent=2))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "vocab": chars, "state": model.state_dict()}, args.save)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
