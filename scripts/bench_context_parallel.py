"""Context-parallel scan: one sequence of N tokens (default 262,144; B = 1, H = 4, D = 64,
S = 16 nodes, bilateral, float32) on 1 process against R processes (default 2) that each
hold N / R tokens and run laplace_attn.distributed.context_parallel_scan over gloo
(loopback). Forward and forward + backward; time is the median of --repeats steps, all
ranks started together (a barrier before each) and the slowest rank counted; memory is
each rank's resident-set growth during the first step. Also times the exchange alone
(the all-gather of the states that a forward makes, and the all-reduce of their
gradients), and prints the communication a step needs.

With 2 cores here, 1 process runs with 2 threads and each of 2 processes with 1, so the
comparison is of the same hardware split two ways.

Prints a table and writes bench_results/bench_context_parallel.json and .png.

    .venv/bin/python scripts/bench_context_parallel.py [--length 262144] [--ranks 2]
        [--repeats 5]
"""
import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

import laplace_attn  # noqa: E402
from laplace_attn.distributed import context_parallel_scan  # noqa: E402

B, H, D, S = 1, 4, 64, 16


def inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(B, n, H, D, generator=g),
                decay=torch.logspace(-4, -1, S).repeat(H, 1),
                freq=torch.rand(H, S, generator=g),
                c_fwd=torch.randn(H, S, D, 2, generator=g) / S,
                c_bwd=torch.randn(H, S, D, 2, generator=g) / S)


def timed(step, repeats, sync=lambda: None):
    step()  # warm-up
    times, peak = [], 0
    for i in range(repeats):
        sync()
        before = benchlib.reset_peak_rss() if i == 0 else 0
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = benchlib.peak_rss_bytes() - before
    times.sort()
    return {"seconds": times[len(times) // 2], "peak_bytes": peak}


def step_of(run, x, backward):
    params = {k: v.requires_grad_(backward) for k, v in x.items()}

    def step():
        if not backward:
            with torch.no_grad():
                run(params)
            return
        y, final, first = run(params)
        (y.square().mean() + final.square().mean() + first.square().mean()).backward()
        for t in params.values():
            t.grad = None
    return step


def single(length, repeats, queue):
    torch.set_num_threads(2)
    x = inputs(length)
    run = lambda p: laplace_attn.laplace_scan(**p)  # noqa: E731
    queue.put({key: timed(step_of(run, x, backward), repeats)
               for key, backward in (("forward", False), ("forward_backward", True))})


def rank_worker(rank, world, store, length, repeats, queue):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=600))
    torch.set_num_threads(1)
    x = inputs(length)
    x["u"] = torch.tensor_split(x["u"], world, dim=1)[rank].contiguous()

    def run(p):
        p = dict(p)
        return context_parallel_scan(p.pop("u"), **p)

    result = {key: timed(step_of(run, x, backward), repeats, dist.barrier)
              for key, backward in (("forward", False), ("forward_backward", True))}
    # The exchange alone: a forward's all-gather of [2, B, H, S, D, 2] states and the
    # backward's all-reduce of the gathered gradients.
    states = torch.randn(2, B, H, S, D, 2)
    gathered = [torch.empty_like(states) for _ in range(world)]
    grads = torch.randn(world, *states.shape)

    def exchange():
        dist.all_gather(gathered, states)
        dist.all_reduce(grads)
    result["exchange"] = timed(exchange, repeats, dist.barrier)
    queue.put((rank, result))
    dist.destroy_process_group()


def measure_ranks(world, length, repeats):
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(rank_worker, args=(world, f"{folder}/store", length, repeats, queue),
                           nprocs=world, join=True, start_method="spawn")
    results = dict(queue.get() for _ in range(world))
    slowest = {key: max(results[r][key]["seconds"] for r in results)
               for key in ("forward", "forward_backward", "exchange")}
    return results, slowest


def measure_single(length, repeats):
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    process = ctx.Process(target=single, args=(length, repeats, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=262144)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    args = parser.parse_args()

    one = measure_single(args.length, args.repeats)
    per_rank, slowest = measure_ranks(args.ranks, args.length, args.repeats)
    state_bytes = 2 * B * H * S * D * 2 * 4  # both directions, complex, float32
    sent = {"forward all-gather": (args.ranks - 1) * state_bytes,
            # a ring all-reduce of the R gathered gradients: 2 (R - 1) / R of R states
            "backward all-reduce": 2 * (args.ranks - 1) * state_bytes}
    print(f"N = {args.length}, B = {B}, H = {H}, D = {D}, S = {S}, bilateral, float32; "
          f"{args.ranks} ranks over gloo (loopback), {laplace_attn.build_info()['simd']}")
    header = f"{'':<32} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | {'fwd+bwd MB / rank':>17}"
    print(header + "\n" + "-" * len(header))
    print(f"{'1 process, 2 threads':<32} | {benchlib.cell_ms(one['forward'])} | "
          f"{benchlib.cell_ms(one['forward_backward'], 10)} | "
          f"{benchlib.cell_mb(one['forward_backward'], 17)}")
    worst_mb = max(r["forward_backward"]["peak_bytes"] for r in per_rank.values())
    print(f"{f'{args.ranks} processes, 1 thread each':<32} | "
          f"{benchlib.cell_ms({'seconds': slowest['forward']})} | "
          f"{benchlib.cell_ms({'seconds': slowest['forward_backward']}, 10)} | "
          f"{benchlib.cell_mb({'peak_bytes': worst_mb}, 17)}")
    share = slowest["exchange"] / slowest["forward_backward"]
    print(f"the exchange alone (all-gather + all-reduce of the states): "
          f"{slowest['exchange'] * 1e3:.2f} ms, {share:.1%} of the context-parallel step")
    for name, size in sent.items():
        print(f"  {name}: {size / 2**10:.0f} KiB sent per rank per step")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"length": args.length, "ranks": args.ranks, "single": one,
              "per_rank": {str(r): v for r, v in per_rank.items()}, "slowest": slowest,
              "state_bytes": state_bytes, "sent_bytes_per_rank": sent}
    (args.out / "bench_context_parallel.json").write_text(json.dumps(result, indent=2))
    plot(one, slowest, args, args.out / "bench_context_parallel.png")
    print(f"wrote {args.out / 'bench_context_parallel.json'} and "
          f"{args.out / 'bench_context_parallel.png'}")


def plot(one, slowest, args, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = ["forward", "forward + backward"]
    ax.bar([0 - 0.2, 1 - 0.2], [one[k]["seconds"] * 1e3 for k in ("forward", "forward_backward")],
           0.4, label="1 process, 2 threads")
    ax.bar([0 + 0.2, 1 + 0.2], [slowest[k] * 1e3 for k in ("forward", "forward_backward")],
           0.4, label=f"{args.ranks} processes (context parallel)")
    ax.set_xticks([0, 1], labels)
    ax.set_ylabel("time (ms)")
    ax.set_title(f"laplace_scan, N = {args.length}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
