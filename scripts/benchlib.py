"""What the benchmark scripts share: one measurement per process, time and peak
memory of a step, tables and plots.

Peak memory is the growth of the resident set during one call: the kernel's
high-water mark (VmHWM) is reset just before the call and compared with the
resident set (VmRSS) at that moment.
"""
import json
import os
import subprocess
import sys
import time

import torch


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss():
    """Resets the high-water mark to the current resident set; returns it in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes():
    return _status_kib("VmHWM") * 1024


def measure_step(step, repeats):
    """Warm-up, then `repeats` timed calls; memory from the first. Prints JSON."""
    step()
    times, peak = [], 0
    for i in range(repeats):
        before = reset_peak_rss() if i == 0 else 0
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = peak_rss_bytes() - before
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "peak_bytes": peak}))


def run_worker(worker_args, run_method):
    """The --worker side of measure_in_subprocess: method, N, backward, repeats."""
    method, n, backward, repeats = worker_args
    torch.manual_seed(0)
    measure_step(run_method(method, int(n), bool(int(backward))), int(repeats))


def measure_in_subprocess(script, *args):
    """Runs `script --worker args...` and returns its JSON (or {"error": ...})."""
    cmd = [sys.executable, script, "--worker", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_gfma(n=2048, repeats=5):
    """torch float32 matmul rate in this process, in G fused multiply-adds/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return n**3 * repeats / (time.perf_counter() - start) / 1e9


def cell_ms(result, width=9):
    return f"{result['seconds'] * 1e3:{width}.1f}" if "seconds" in result else f"{'-':>{width}}"


def cell_mb(result, width=8):
    return (f"{result['peak_bytes'] / 2**20:{width}.0f}" if "peak_bytes" in result
            else f"{'-':>{width}}")


def format_row(row, method_width):
    """One table row: N, method, time and memory forward and forward + backward, and
    the rate against matmul where the row has one."""
    if "skipped" in row:
        return f"{row['N']:>7} | {row['method']:<{method_width}} | skipped: {row['skipped']}"
    gf = f"{row['gfma_per_s']:7.1f}" if "gfma_per_s" in row else f"{'':>7}"
    frac = f"{row['fraction_of_matmul'] * 100:7.0f}%" if "fraction_of_matmul" in row else ""
    fwd, both = row.get("forward", {}), row.get("forward_backward", {})
    return (f"{row['N']:>7} | {row['method']:<{method_width}} | {cell_ms(fwd)} | "
            f"{cell_ms(both, 10)} | {cell_mb(fwd)} | {cell_mb(both, 10)} | {gf} | {frac:>8}")


def plot_time_and_memory(rows, methods, path, title):
    """rows: dicts with N, method, forward, forward_backward; log-log time and memory."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, method in enumerate(methods):
        for key, style, label in (("forward", "-o", "fwd"), ("forward_backward", "--s", "fwd+bwd")):
            pts = [(r["N"], r[key]) for r in rows
                   if r["method"] == method and "seconds" in r.get(key, {})]
            if not pts:
                continue
            n = [p[0] for p in pts]
            axes[0].loglog(n, [p[1]["seconds"] * 1e3 for p in pts], style, color=f"C{i}",
                           label=f"{method} {label}")
            axes[1].loglog(n, [max(p[1]["peak_bytes"], 1) / 2**20 for p in pts], style,
                           color=f"C{i}", label=f"{method} {label}")
    axes[0].set(xlabel="sequence length N", ylabel="time (ms)", title=f"time, {title}")
    axes[1].set(xlabel="sequence length N", ylabel="peak extra memory (MB)", title="memory")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
