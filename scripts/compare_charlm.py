"""Runs train_charlm.py for softmax and the STLT variants with equal steps and
seeds, then prints one table and writes bench_results/charlm.json.

    .venv/bin/python scripts/compare_charlm.py --data FILE [--steps 600]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

# (name, extra arguments); quality runs use the short context.
QUALITY = [
    ("softmax", ["--attention", "softmax"]),
    ("stlt multiplicative S=32", ["--attention", "stlt", "--mixer", "multiplicative"]),
    ("stlt gated S=32", ["--attention", "stlt", "--mixer", "gated"]),
    ("stlt plain S=32", ["--attention", "stlt", "--mixer", "plain"]),
    ("stlt multiplicative S=64", ["--attention", "stlt", "--mixer", "multiplicative",
                                  "--nodes", "64"]),
    ("stlt-adaptive multiplicative S=64, budget 32", ["--attention", "stlt-adaptive",
                                                      "--mixer", "multiplicative", "--nodes", "64",
                                                      "--target-nodes", "32",
                                                      "--lambda-mask", "1e-2"]),
]
THROUGHPUT = [
    ("softmax", ["--attention", "softmax"]),
    ("stlt multiplicative S=32", ["--attention", "stlt", "--mixer", "multiplicative"]),
    ("stlt gated S=32", ["--attention", "stlt", "--mixer", "gated"]),
]


def run(name, extra, common, out_dir, tag):
    out = out_dir / f"charlm_{tag}_{name.replace(' ', '_').replace('=', '')}.json"
    cmd = [sys.executable, str(HERE / "train_charlm.py"), *common, *extra, "--out", str(out)]
    print(f"== {tag}: {name}", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["name"] = name
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--throughput-steps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    args = p.parse_args()
    args.out.mkdir(exist_ok=True)

    base = ["--data", args.data, "--seed", str(args.seed)]
    quality = [run(n, e, base + ["--context", "256", "--batch", "16", "--steps", str(args.steps)],
                   args.out, "ctx256") for n, e in QUALITY]
    speed = [run(n, e, base + ["--context", "1024", "--batch", "4", "--steps",
                               str(args.throughput_steps), "--eval-batches", "2"],
                 args.out, "ctx1024") for n, e in THROUGHPUT]

    softmax_bpc = quality[0]["val_bpc"]
    w = max(len(r["name"]) for r in quality + speed)
    print(f"\ncontext 256, {args.steps} steps, seed {args.seed}, width {quality[0]['width']}, "
          f"{quality[0]['layers']} layers")
    print(f"{'attention':<{w}} {'val bpc':>8} {'vs softmax':>10} {'tokens/s':>9} "
          f"{'peak MiB':>9} {'S_eff':>6}")
    for r in quality:
        s_eff = f"{r['s_eff']:.1f}" if r["s_eff"] is not None else "-"
        gap = 100 * (r["val_bpc"] / softmax_bpc - 1)
        print(f"{r['name']:<{w}} {r['val_bpc']:8.3f} {gap:+9.1f}% "
              f"{r['train_tokens_per_s']:9.0f} {r['peak_rss_mib']:9.0f} {s_eff:>6}")
    print(f"\ncontext 1024, training throughput ({args.throughput_steps} steps)")
    for r in speed:
        print(f"{r['name']:<{w}} {r['train_tokens_per_s']:9.0f} tokens/s "
              f"{r['peak_rss_mib']:9.0f} MiB peak")
    (args.out / "charlm.json").write_text(json.dumps({"quality": quality, "throughput": speed},
                                                     indent=2))


if __name__ == "__main__":
    main()
