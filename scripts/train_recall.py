"""Multi-query associative recall: can the token mixer look things up by content?

Each sequence lists key-value pairs, then asks for some of the keys again; the
model must answer with each key's value. With ``--slots`` larger than ``--pairs``
the pairs sit at random places among filler, so only a mixer that looks up by
content (not by distance) can answer (MQAR, the Zoology benchmark's task). Trains
the same small causal model with softmax, each STLT mixer (the linear one also with
a short convolution) and exact Laplacian attention (with and without q/k
normalisation), over --seeds seeds and each learning rate of --lrs, and prints one
table: per kind the best learning rate's mean ± sd answer accuracy
(docs/quality.md).

    .venv/bin/python scripts/train_recall.py [--steps 3000] [--slots 16] [--seeds 3]
        [--lrs 3e-4 1e-3 3e-3]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from train_charlm import CharLM

# (name, attention, STLT mixer, further layer options); causal Laplacian calls are exact.
KINDS = [("softmax", "softmax", "gated", {}), ("stlt plain", "stlt", "plain", {}),
         ("stlt gated", "stlt", "gated", {}), ("stlt multiplicative", "stlt", "multiplicative", {}),
         ("stlt linear", "stlt", "linear", {}),
         ("stlt linear conv4", "stlt", "linear", {"short_conv": 4}),
         ("laplacian exact", "laplacian", "gated", {}),
         ("laplacian exact, no qk_norm", "laplacian", "gated", {"qk_norm": False})]


def make_batch(batch, pairs, queries, num_keys, num_values, generator, slots=None):
    """Tokens: keys 0..K-1, values K..K+V-1, a filler K+V. Layout: a prefix of
    ``slots`` two-token slots (default ``pairs``), ``pairs`` of them holding a "k v"
    pair at random places and the rest "filler filler", then "q a" for each query.
    Targets are -100 except at the query positions, whose next token is the answer."""
    slots = pairs if slots is None else slots
    filler = num_keys + num_values
    keys = torch.stack([torch.randperm(num_keys, generator=generator)[:pairs]
                        for _ in range(batch)])
    values = torch.randint(num_keys, num_keys + num_values, (batch, pairs), generator=generator)
    pick = torch.randint(0, pairs, (batch, queries), generator=generator)
    q_keys = keys.gather(1, pick)
    q_vals = values.gather(1, pick)
    pair_tokens = torch.stack([keys, values], -1)
    if slots == pairs:
        prefix = pair_tokens
    else:
        # Pairs at random slots, so a pair's distance to the queries varies and a
        # fixed-lag convolution cannot route each pair to its own channels.
        where = torch.stack([torch.randperm(slots, generator=generator)[:pairs].sort().values
                             for _ in range(batch)])
        prefix = torch.full((batch, slots, 2), filler)
        prefix.scatter_(1, where[..., None].expand(-1, -1, 2), pair_tokens)
    seq = torch.cat([prefix.flatten(1), torch.stack([q_keys, q_vals], -1).flatten(1)], dim=1)
    x, y = seq[:, :-1], seq[:, 1:].clone()
    answer = torch.zeros_like(y, dtype=torch.bool)
    answer[:, 2 * slots::2] = True  # after each query key comes its value
    y[~answer] = -100
    return x, y


def train(kind, mixer, options, args, seed, lr):
    torch.manual_seed(seed)
    length = 2 * (args.slots + args.queries) - 1
    vocab = args.keys + args.values + (args.slots > args.pairs)  # + the filler token
    model = CharLM(vocab, args.width, args.layers, args.heads, length, kind,
                   args.nodes, mixer, layer_options=options)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(args.steps):
        x, y = make_batch(args.batch, args.pairs, args.queries, args.keys, args.values, gen,
                          args.slots)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"  {kind}/{mixer} lr {lr:g} seed {seed}: step {step + 1}, loss "
                  f"{loss.item():.3f}, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        x, y = make_batch(2000, args.pairs, args.queries, args.keys, args.values,
                          torch.Generator().manual_seed(999), args.slots)
        pred = model(x).argmax(-1)
        mask = y != -100
        accuracy = (pred[mask] == y[mask]).float().mean().item()
    return {"accuracy": accuracy, "final_loss": loss.item(), "train_seconds": seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--slots", type=int, default=None,
                   help="two-token slots before the queries, pairs at random places among "
                        "them (default: --pairs, the pairs back to back)")
    p.add_argument("--keys", type=int, default=16)
    p.add_argument("--values", type=int, default=16)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--nodes", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-4],
                   help="learning rates to sweep; each kind reports its best")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..n-1 per learning rate")
    p.add_argument("--kinds", nargs="+", default=[name for name, *_ in KINDS],
                   choices=[name for name, *_ in KINDS], help="which mixers to train")
    p.add_argument("--log-every", type=int, default=0,
                   help="print the training loss to stderr every this many steps")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: torch's); 1 lets runs share the cores")
    p.add_argument("--out", type=Path, default=Path("bench_results/recall.json"))
    args = p.parse_args()
    args.slots = args.pairs if args.slots is None else args.slots
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.slots < args.pairs:
        p.error(f"--slots ({args.slots}) must be at least --pairs ({args.pairs})")

    chance = 1.0 / args.values
    results = {}
    # Guessing among the values present in the sequence needs no lookup by key;
    # only accuracy well above 1/pairs shows recall.
    print(f"{args.pairs} pairs in {args.slots} slots, {args.queries} queries, {args.keys} keys, "
          f"{args.values} values; "
          f"{args.steps} steps; chance = {chance:.3f}; a guess among the sequence's values "
          f"= {1 / args.pairs:.3f}")
    print(f"{'kind':<28} | {'best lr':>8} | {'accuracy':>15} | runs")
    for name, kind, mixer, options in KINDS:
        if name not in args.kinds:
            continue
        sweep = {}
        for lr in args.lrs:
            runs = [train(kind, mixer, options, args, seed, lr) for seed in range(args.seeds)]
            sweep[lr] = runs
        best = max(sweep, key=lambda lr: statistics.mean(r["accuracy"] for r in sweep[lr]))
        accs = [r["accuracy"] for r in sweep[best]]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        results[name] = {"accuracy": statistics.mean(accs), "accuracy_sd": sd, "best_lr": best,
                         "runs": {str(lr): runs for lr, runs in sweep.items()}}
        print(f"{name:<28} | {best:>8.0e} | {results[name]['accuracy']:.3f} ± {sd:.3f}   | "
              + " ".join(f"{a:.3f}" for a in accs), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": vars(args) | {"out": str(args.out)},
                                    "results": results}, indent=2))


if __name__ == "__main__":
    main()
