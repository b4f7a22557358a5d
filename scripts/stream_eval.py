"""Streaming evaluation: a causal language model reads a long text in chunks,
carrying every layer's decoding cache from chunk to chunk, so memory stays constant
whatever the length; the loss is that of one pass over the whole text (--check runs
that pass and compares, token by token).

The model is a TorchScript laplace_attn.DecoderLM (--model, e.g. the demo's
demo_out/model.pt) or one trained here for --steps on the first 90% of the bytes; the
text streamed is the held-out rest (the Python standard library's sources, or --data).
Prints bits per byte by position in the stream and the resident memory after each
chunk; writes bench_results/stream_eval.json and .png.

    .venv/bin/python scripts/stream_eval.py [--data FILE] [--tokens 131072]
        [--chunk 4096] [--model FILE | --steps 300] [--check] [--out bench_results]
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import laplace_attn
from demo import byte_model, load_bytes, train


def resident_mib(field="VmRSS"):
    """Resident memory now (VmRSS) or at its peak so far (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def token_losses(logits, targets):
    """Cross entropy per token, in bits, [N]."""
    return F.cross_entropy(logits[0].float(), targets[0], reduction="none") / math.log(2)


@torch.inference_mode()
def stream(model, text, chunk):
    """Per-token losses of ``text`` [1, n + 1] read ``chunk`` tokens at a time, and for
    each chunk its end, the seconds it took and the resident memory after it."""
    n = text.shape[1] - 1
    cache = model.new_cache(1, n)
    losses, chunks = [], []
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        began = time.perf_counter()
        logits = model(text[:, start:end], cache=cache)
        losses.append(token_losses(logits, text[:, start + 1:end + 1]))
        chunks.append({"end": end, "seconds": time.perf_counter() - began,
                       "resident_mib": resident_mib()})
    return torch.cat(losses), chunks


@torch.inference_mode()
def unchunked(model, text):
    return token_losses(model(text[:, :-1]), text[:, 1:])


def buckets(n):
    """Position ranges [0, 1024), [1024, 2048), [2048, 4096)... up to n."""
    edges = [0, 1024]
    while edges[-1] < n:
        edges.append(min(n, 2 * edges[-1]))
    return [(a, b) for a, b in zip(edges, edges[1:]) if a < n]


def plot(losses, reference, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(x, width=1024):
        x = x.double()
        kernel = torch.ones(1, 1, width, dtype=x.dtype) / width
        return F.conv1d(x.view(1, 1, -1), kernel).view(-1)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(smooth(losses).numpy(), label="chunked, carrying the caches")
    if reference is not None:
        ax.plot(smooth(reference).numpy(), "--", label="one pass over the whole text")
    ax.set(xlabel="position in the stream (tokens)", ylabel="bits per byte (mean of 1024)",
           title="streaming evaluation")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="text file (default: the Python standard library's sources)")
    parser.add_argument("--tokens", type=int, default=131072, help="tokens to stream")
    parser.add_argument("--chunk", type=int, default=4096, help="tokens per call")
    parser.add_argument("--model", type=Path, default=None,
                        help="a TorchScript laplace_attn.DecoderLM over bytes (default: train one)")
    parser.add_argument("--steps", type=int, default=300,
                        help="training steps of the model trained here")
    parser.add_argument("--check", action="store_true",
                        help="also run one unchunked pass and compare the losses")
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.tokens < 2 or args.chunk < 1:
        parser.error(f"--tokens must be >= 2 and --chunk >= 1, got {args.tokens} and {args.chunk}")
    torch.manual_seed(args.seed)

    data = load_bytes(args.data)
    split = int(0.9 * len(data))
    if args.model is not None:
        model = torch.jit.load(str(args.model)).eval()
        origin = f"{args.model}"
    else:
        model = byte_model(context=256)
        if args.steps > 0:
            train(model, data, args.steps, 16, 256, args.seed)
        model.eval()
        origin = f"trained here for {args.steps} steps"
    text = data[split:split + args.tokens + 1].view(1, -1)
    if text.shape[1] < args.tokens + 1:
        raise SystemExit(f"stream_eval: the held-out text has {text.shape[1] - 1} tokens, fewer "
                         f"than --tokens {args.tokens}; pass a longer --data")

    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}, CPU kernels: {info['simd']}, "
          f"{info['num_threads']} threads; model: {origin}")
    print(f"streaming {args.tokens:,} held-out bytes in chunks of {args.chunk:,}")
    before = resident_mib()
    start = time.perf_counter()
    losses, chunks = stream(model, text, args.chunk)
    seconds = time.perf_counter() - start
    after_first = chunks[0]["resident_mib"]
    peak = max(c["resident_mib"] for c in chunks)
    print(f"  {args.tokens / seconds:,.0f} tokens/s; resident memory {before:.0f} MiB before, "
          f"{after_first:.0f} MiB after the first chunk, at most {peak:.0f} MiB after any "
          f"(growth after the first chunk: {peak - after_first:+.1f} MiB)")

    reference = None
    result = {"tokens": args.tokens, "chunk": args.chunk, "model": origin, "build": info,
              "chunks": chunks}
    if args.check:
        start = time.perf_counter()
        reference = unchunked(model, text)
        gap = (losses - reference).abs().max().item()
        print(f"  one unchunked pass: {time.perf_counter() - start:.1f} s, resident memory at "
              f"most {resident_mib('VmHWM'):.0f} MiB; per-token loss, max |chunked - unchunked| "
              f"= {gap:.2e} bits")
        result["max_abs_loss_difference_bits"] = gap

    print(f"\n{'positions':>17} | {'bits/byte':>9}" + (f" | {'unchunked':>9}" if args.check else ""))
    rows = []
    for a, b in buckets(args.tokens):
        row = {"from": a, "to": b, "bits_per_byte": losses[a:b].mean().item()}
        line = f"{a:>8,}-{b:<8,} | {row['bits_per_byte']:9.4f}"
        if reference is not None:
            row["unchunked_bits_per_byte"] = reference[a:b].mean().item()
            line += f" | {row['unchunked_bits_per_byte']:9.4f}"
        rows.append(row)
        print(line)
    print(f"{'all':>17} | {losses.mean().item():9.4f}")
    result["rows"] = rows
    result["bits_per_byte"] = losses.mean().item()

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream_eval.json").write_text(json.dumps(result, indent=2))
    plot(losses, reference, args.out / "stream_eval.png")
    print(f"\nwrote {args.out / 'stream_eval.json'} and {args.out / 'stream_eval.png'}")


if __name__ == "__main__":
    main()
