"""The training and plotting scripts run end to end on tiny settings."""
import json
import subprocess
import sys
from pathlib import Path

import torch

import laplace_attn

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run(script, *args):
    out = subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                         capture_output=True, text=True, cwd=SCRIPTS, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_charlm_trains_saves_and_plots(tmp_path):
    # Default data: a Python standard library source file, present everywhere.
    result_file, ckpt, png = tmp_path / "r.json", tmp_path / "m.pt", tmp_path / "nodes.png"
    run("train_charlm.py", "--attention", "stlt-adaptive", "--width", 32, "--layers", 1,
        "--heads", 2, "--nodes", 8, "--context", 64, "--batch", 4, "--steps", 20,
        "--eval-batches", 2, "--out", result_file, "--save", ckpt)
    result = json.loads(result_file.read_text())
    vocab_bits = __import__("math").log2(200)
    assert 0.0 < result["val_bpc"] < vocab_bits
    assert result["train_tokens_per_s"] > 0 and 0 < result["s_eff"] <= 8
    printed = run("plot_nodes.py", ckpt, "--out", png)
    assert "half-lives" in printed and png.stat().st_size > 10_000


def test_recall_runs(tmp_path):
    out = tmp_path / "recall.json"
    printed = run("train_recall.py", "--steps", 3, "--pairs", 4, "--slots", 6, "--queries", 4,
                  "--width", 16, "--layers", 1, "--seeds", 2, "--lrs", 1e-3, 3e-3, "--out", out)
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"softmax", "stlt plain", "stlt gated", "stlt multiplicative",
                            "stlt linear", "stlt linear conv4", "laplacian exact",
                            "laplacian exact, no qk_norm"}
    for name, r in results.items():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["best_lr"] in (1e-3, 3e-3)
        assert set(r["runs"]) == {"0.001", "0.003"} and all(len(v) == 2 for v in r["runs"].values())
        assert name in printed


def test_linear_attention_benchmark_runs(tmp_path):
    printed = run("bench_linear_attention.py", "--lengths", 64, 130, "--out", tmp_path)
    bench = json.loads((tmp_path / "bench_linear_attention.json").read_text())
    methods = {row["method"] for row in bench["rows"]}
    assert methods == {"linear_attention", "linear_attention bfloat16", "laplace_scan",
                       "quadratic", "sdpa"}
    for row in bench["rows"]:
        assert "error" not in row["forward"] and "error" not in row["forward_backward"], row
        assert row["forward"]["seconds"] > 0
    assert (tmp_path / "bench_linear_attention.png").stat().st_size > 10_000
    assert "GFMA/s" in printed


def test_decode_benchmark_runs(tmp_path):
    printed = run("bench_decode.py", "--contexts", 16, 40, "--recompute-max", 16, "--repeats", 2,
                  "--out", tmp_path)
    bench = json.loads((tmp_path / "bench_decode.json").read_text())
    methods = {(row["context"], row["method"]) for row in bench["rows"]}
    no_cache = "stlt multiplicative, no cache"
    assert (16, no_cache) in methods and (40, no_cache) not in methods
    assert {m for _, m in methods} == {
        "stlt multiplicative", "stlt multiplicative, TorchScript", no_cache,
        "stlt multiplicative, plain-PyTorch step", "stlt linear conv4",
        "softmax, KV cache (SDPA)", "laplacian, KV cache"}
    for row in bench["rows"]:
        assert row["seconds_per_token"] > 0
    kv = [r["cache_bytes"] for r in bench["rows"] if r["method"] == "softmax, KV cache (SDPA)"]
    assert kv == [2 * 4 * n * 256 * 4 for n in (16, 40)]  # keys and values, 4 layers, float32
    # The plain-PyTorch step is checked against the cached model before timing.
    gap = float(printed.split("max |logit difference| ")[1].split()[0])
    assert gap <= 1e-4
    assert "softmax + KV cache step / this step" in printed and "all operators" in printed
    assert (tmp_path / "bench_decode.png").stat().st_size > 10_000


def test_packed_benchmark_runs(tmp_path):
    printed = run("bench_packed.py", "--sequences", 3, "--lengths", 70, 90, "--repeats", 1,
                  "--out", tmp_path)
    bench = json.loads((tmp_path / "bench_packed.json").read_text())
    assert len(bench["lengths"]) == 3 and all(70 <= n <= 90 for n in bench["lengths"])
    assert {(r["layer"], r["layout"]) for r in bench["rows"]} == {
        (layer, layout) for layer in ("stlt causal", "laplacian exact causal",
                                      "laplacian nystrom", "sdpa causal")
        for layout in ("padded", "packed", "loop")}
    for row in bench["rows"]:
        assert row["forward_backward"]["seconds"] > 0, row
    # Longer than the 64 landmarks, so Nystrom agrees too.
    for name, gap in bench["packed_minus_loop"].items():
        assert gap <= 1e-4, (name, gap)
    assert "fwd+bwd / padded" in printed
    assert (tmp_path / "bench_packed.png").stat().st_size > 10_000


def test_context_parallel_benchmark_runs(tmp_path):
    printed = run("bench_context_parallel.py", "--length", 2048, "--repeats", 1, "--out",
                  tmp_path)
    bench = json.loads((tmp_path / "bench_context_parallel.json").read_text())
    assert bench["ranks"] == 2 and set(bench["per_rank"]) == {"0", "1"}
    for key in ("forward", "forward_backward", "exchange"):
        assert bench["slowest"][key] > 0
    assert bench["sent_bytes_per_rank"]["forward all-gather"] == bench["state_bytes"]
    assert "the exchange alone" in printed
    assert (tmp_path / "bench_context_parallel.png").stat().st_size > 10_000


def test_recall_sequences_ask_for_the_values_of_earlier_keys():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import torch
        from train_recall import make_batch
    finally:
        sys.path.remove(str(SCRIPTS))
    pairs, slots, keys, values = 3, 7, 16, 16
    filler = keys + values
    for layout in (None, slots):
        x, y = make_batch(50, pairs, 5, keys, values, torch.Generator().manual_seed(0), layout)
        prefix = 2 * (layout or pairs)
        assert x.shape == (50, prefix + 2 * 5 - 1)
        for row, targets in zip(x.tolist(), y.tolist()):
            tokens = row[:prefix]
            assert tokens.count(filler) == prefix - 2 * pairs
            stored = {k: v for k, v in zip(tokens[::2], tokens[1::2]) if k != filler}
            assert len(stored) == pairs and all(v >= keys for v in stored.values())
            asked = [(row[t], targets[t]) for t in range(len(row)) if targets[t] != -100]
            assert len(asked) == 5 and all(stored[k] == v for k, v in asked)


def test_demo_tour_exports_and_runs_in_cpp(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    out = run("demo.py", "--data", text, "--steps", 10, "--context", 64, "--lengths", 128,
              "--out", tmp_path / "out")
    gaps = [float(line.rsplit("=", 1)[1]) for line in out.splitlines()
            if "C++ vs Python: max |difference|" in line]
    assert len(gaps) == 2 and max(gaps) < 1e-4, out
    assert "half-lives" in out and "STLT speed-up" in out
    assert "the same 160 bytes as Python's continuation: yes" in out, out
    assert "sampled by laplace_attn.generate at" in out
    assert (tmp_path / "out" / "model.pt").exists() and (tmp_path / "out" / "model.pt2").exists()


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    """scripts/gpu_check.sh --dry-run: its own logic end to end, CPU stand-ins for the GPU."""
    import os
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--dry-run"], capture_output=True,
                         text=True, cwd=SCRIPTS.parent, env=env, timeout=900)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    for heading in ["== machine", "== build against this torch", "== Python tests",
                    "== Catch2 tests", "== benchmark"]:
        assert heading in out.stdout, heading
    assert "gpu_check: ok (dry run)" in out.stdout
    assert "threads launched per kernel" in out.stdout
    bench = json.loads((tmp_path / "bench_cuda.json").read_text())
    assert {row["method"] for row in bench["rows"]} >= {"laplace_scan", "fft", "sdpa"}


def test_gpu_check_rejects_unknown_arguments():
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--fast"], capture_output=True,
                         text=True, cwd=SCRIPTS.parent, timeout=60)
    assert out.returncode == 2 and "unknown argument '--fast'" in out.stderr


def test_stream_eval_chunked_equals_one_pass(tmp_path):
    """scripts/stream_eval.py carries every layer's cache across chunks: the per-token
    losses are those of one unchunked pass (a linear-mixer model, whose chunks are not
    bit-for-bit the unchunked computation)."""
    torch.manual_seed(0)
    model = laplace_attn.DecoderLM(256, 32, 2, 4, num_nodes=8, mixer="linear", short_conv=4)
    torch.jit.script(model.eval()).save(str(tmp_path / "lm.pt"))
    text = tmp_path / "text.txt"
    text.write_bytes(bytes(range(256)) * 400)
    out = run("stream_eval.py", "--data", text, "--model", tmp_path / "lm.pt", "--tokens", 9000,
              "--chunk", 1000, "--check", "--out", tmp_path / "out")
    gap = float(out.split("max |chunked - unchunked| = ")[1].split()[0])
    assert gap <= 1e-5, out
    assert "65,536" not in out and "4,096-8,192" in out
    result = json.loads((tmp_path / "out" / "stream_eval.json").read_text())
    assert len(result["chunks"]) == 9 and (tmp_path / "out" / "stream_eval.png").exists()


def test_train_hf_compares_the_attention_implementations(tmp_path):
    """scripts/train_hf.py: a transformers Llama config with sdpa, laplacian and stlt."""
    out = tmp_path / "hf.json"
    printed = run("train_hf.py", "--steps", 3, "--width", 32, "--layers", 1, "--context", 32,
                  "--batch", 2, "--eval-batches", 1, "--out", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["implementation"] for r in rows] == ["sdpa", "laplacian", "stlt"]
    for r in rows:
        assert 0 < r["val_bits_per_byte"] < 9 and r["train_tokens_per_s"] > 0
        assert len(r["sample"]) > 40
    # STLT adds its nodes: 4 heads x 16 nodes x (2 + 8 x 2) + 4 window parameters.
    assert rows[2]["parameters"] - rows[0]["parameters"] == 4 * 16 * (2 + 8 * 2) + 4
    assert "attn_implementation" in printed
