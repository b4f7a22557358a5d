"""A Hugging Face Llama-config causal LM trained from scratch on bytes of text with
each attention implementation — transformers' SDPA, laplace_attn's "laplacian" and
"stlt" — at equal steps, seed and data: one table of validation bits per byte,
training tokens/s and peak memory, then a sample from each (transformers' generate).

    .venv/bin/python scripts/train_hf.py [--data FILE] [--steps 300] [--out FILE.json]

Default data: ../shared/data/tinyshakespeare.txt where it exists, else the Python
standard library's sources.
"""
import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig

import laplace_attn
import laplace_attn.integrations.transformers as lt
from demo import load_bytes

IMPLEMENTATIONS = ("sdpa", "laplacian", "stlt")
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def build(implementation, args):
    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=256, hidden_size=args.width, intermediate_size=4 * args.width,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, max_position_embeddings=args.context,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if implementation == "stlt":
        model = AutoModelForCausalLM.from_config(config)
        lt.enable_stlt(model, num_nodes=args.nodes, expected_length=args.context)
    else:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=implementation)
    return model


def batch_of(data, batch, context, generator):
    starts = torch.randint(0, len(data) - context - 1, (batch,), generator=generator)
    return torch.stack([data[s:s + context + 1] for s in starts])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def validation_bits(model, data, args):
    model.eval()
    generator = torch.Generator().manual_seed(args.seed + 1)
    total = 0.0
    for _ in range(args.eval_batches):
        tokens = batch_of(data, args.batch, args.context, generator)
        logits = model(tokens[:, :-1]).logits
        total += F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).item()
    model.train()
    return total / args.eval_batches / math.log(2)


def train(implementation, train_data, val_data, args):
    model = build(implementation, args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / args.steps)))
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        tokens = batch_of(train_data, args.batch, args.context, generator)
        loss = model(tokens, labels=tokens).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % 25 == 0 or step == args.steps:
            rate = step * args.batch * args.context / (time.perf_counter() - start)
            sys.stderr.write(f"\r  {implementation}: step {step}/{args.steps} loss "
                             f"{loss.item() / math.log(2):.3f} bits/byte {rate:,.0f} tok/s")
    sys.stderr.write("\n")
    seconds = time.perf_counter() - start
    return model, {"implementation": implementation,
                   "val_bits_per_byte": validation_bits(model, val_data, args),
                   "train_tokens_per_s": args.steps * args.batch * args.context / seconds,
                   "peak_rss_mib": peak_rss_mib(),
                   "parameters": sum(p.numel() for p in model.parameters())}


@torch.no_grad()
def sample(model, prompt, args):
    model.eval()
    tokens = torch.tensor([list(prompt)])
    torch.manual_seed(args.seed)
    out = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=120,
                         do_sample=True, temperature=0.8, top_k=0, pad_token_id=0)
    return bytes(out[0].tolist()).decode("utf-8", errors="replace")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="text file (default: tinyshakespeare if present, else Python's sources)")
    p.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS,
                   default=list(IMPLEMENTATIONS))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--nodes", type=int, default=16, help="STLT nodes per head")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = p.parse_args()

    path = args.data or (SHAKESPEARE if SHAKESPEARE.exists() else None)
    data = load_bytes(path)
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    if len(args.implementations) == 1:  # one run in this process
        implementation = args.implementations[0]
        model, row = train(implementation, train_data, val_data, args)
        row["sample"] = sample(model, bytes(val_data[:40].tolist()), args)
        if args.out:
            args.out.write_text(json.dumps(row, indent=2))
        return
    info = laplace_attn.build_info()
    print(f"Llama config: {args.layers} layers, width {args.width}, {args.heads} heads, context "
          f"{args.context}, bytes of {path or 'the Python standard library'} "
          f"({len(data):,}); {args.steps} steps of {args.batch} x {args.context}; "
          f"{info['num_threads']} threads")
    # Each implementation in a process of its own, so that peak memory is its own.
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for implementation in args.implementations:
            out = Path(folder) / f"{implementation}.json"
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--implementations",
                            implementation, "--out", str(out)], check=True)
            rows.append(json.loads(out.read_text()))
    print(f"\n{'attn_implementation':<20} | {'val bits/byte':>13} | {'train tok/s':>11} | "
          f"{'peak RSS MiB':>12} | {'parameters':>10}")
    for r in rows:
        print(f"{r['implementation']:<20} | {r['val_bits_per_byte']:13.3f} | "
              f"{r['train_tokens_per_s']:11,.0f} | {r['peak_rss_mib']:12,.0f} | "
              f"{r['parameters']:10,}")
    for r in rows:
        print(f"\n{r['implementation']}:\n  " + r["sample"].replace("\n", "\n  "))
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
