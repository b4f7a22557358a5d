"""laplace_attn product tour: train, interpret, export, run from C++, time.

1. trains a small causal STLT language model (laplace_attn.DecoderLM) on bytes of
   text (by default the Python standard library's own sources, which every machine
   with Python has; --data FILE for another text), prints its validation bits per
   byte, and continues a prompt with laplace_attn.generate through the model's
   decoding cache (a constant cost per token), with the decoding rate;
2. prints what the model learned: each head's Laplace nodes as half-lives and
   periods (in tokens);
3. exports it twice, TorchScript and torch.export + AOTInductor (.pt2), runs both
   with the C++ program laplace-attn-infer (no Python in that process) and shows
   that its outputs match Python's, then generates the same continuation from C++
   (laplace-attn-infer --generate);
4. times one STLT attention layer against softmax attention (PyTorch's
   scaled_dot_product_attention, plus the projections) at growing lengths.

    .venv/bin/python scripts/demo.py [--data FILE] [--steps 500] [--out demo_out]
"""
import argparse
import math
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import laplace_attn

SAMPLE_LENGTH = 160  # bytes the model writes after its prompt


# --- data --------------------------------------------------------------------------

def stdlib_text(limit: int = 3_000_000) -> bytes:
    """Python sources of the standard library, in a fixed order, up to ``limit`` bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, size = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
    return b"".join(chunks)


def load_bytes(path):
    data = Path(path).read_bytes() if path else stdlib_text()
    if len(data) < 10_000:
        sys.exit(f"demo: {path} has {len(data)} bytes; at least 10,000 are needed")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def batch_of(data, batch, context, generator):
    starts = torch.randint(0, len(data) - context - 1, (batch,), generator=generator)
    x = torch.stack([data[s:s + context] for s in starts])
    y = torch.stack([data[s + 1:s + context + 1] for s in starts])
    return x, y


# --- model -------------------------------------------------------------------------

def byte_model(context):
    """Bytes -> next-byte logits: causal STLT layers, no position embedding (the
    Laplace scan is ordered)."""
    return laplace_attn.DecoderLM(256, width=128, layers=2, heads=4, num_nodes=16,
                                  expected_length=context)


def train(model, data, steps, batch, context, seed):
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / steps)))
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = batch_of(train_data, batch, context, generator)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % 25 == 0 or step == steps:
            rate = step * batch * context / (time.perf_counter() - start)
            sys.stderr.write(f"\r  step {step}/{steps}  loss {loss.item() / math.log(2):.3f} "
                             f"bits/byte  {rate:,.0f} tokens/s")
    sys.stderr.write("\n")
    model.eval()
    with torch.no_grad():
        x, y = batch_of(val_data, 32, context, torch.Generator().manual_seed(seed + 1))
        bits = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() / math.log(2)
    return val_data, bits


def continue_prompt(model, prompt: bytes, length: int, seed: int):
    """The prompt and ``length`` sampled bytes (temperature 0.7), and the decoding rate."""
    tokens = torch.tensor([list(prompt)])
    generate = laplace_attn.generate
    generate(model, tokens, 4, temperature=0.7)  # warm-up
    start = time.perf_counter()
    out = generate(model, tokens, length, temperature=0.7,
                   generator=torch.Generator().manual_seed(seed))
    rate = length / (time.perf_counter() - start)
    return out, rate


def as_text(tokens) -> str:
    return bytes(tokens.flatten().tolist()).decode("utf-8", errors="replace")


# --- interpretation ----------------------------------------------------------------

def print_nodes(model):
    layers = [m for m in model.modules() if isinstance(m, laplace_attn.STLTAttention)]
    print("\nWhat each head learned to listen to: its nodes' half-lives (tokens until the "
          "memory halves)\nand periods (tokens per oscillation), shortest to longest half-life")
    for index, layer in enumerate(layers):
        rows = layer.describe_nodes()
        for h in range(layer.num_heads):
            nodes = sorted((r for r in rows if r["head"] == h), key=lambda r: r["half_life"])
            lives = " ".join(f"{r['half_life']:.3g}" for r in nodes)
            periods = [r["period"] for r in nodes if math.isfinite(r["period"])]
            print(f"  layer {index} head {h}: half-lives {lives}")
            if periods:
                print(f"  {'':14}periods from {min(periods):.3g} to {max(periods):.3g} tokens")


# --- export and C++ ----------------------------------------------------------------

def run_cpp(model_path, inputs_path, output, *options, echo=None):
    result = subprocess.run([laplace_attn.infer_program(), str(model_path), str(inputs_path),
                             "--output", str(output), *map(str, options)], capture_output=True)
    if result.returncode != 0:
        sys.exit(f"demo: laplace-attn-infer failed:\n{result.stderr.decode(errors='replace')}")
    lines = result.stdout.decode("utf-8", errors="replace").splitlines()
    for line in lines[:echo]:
        print(f"    | {line}")
    return torch.load(output)


def export_and_run(model, tokens, sampled, seed, out_dir):
    with torch.no_grad():
        expected = model(tokens)
    inputs_path = out_dir / "tokens.pt"
    torch.save(tokens, inputs_path)

    print("\nTorchScript: torch.jit.script(model).save(...)")
    script_path = out_dir / "model.pt"
    torch.jit.script(model).save(str(script_path))
    cpp = run_cpp(script_path, inputs_path, out_dir / "model_pt_cpp_out.pt")
    print(f"  C++ vs Python: max |difference| = {(cpp - expected).abs().max().item():.2e}")

    prompt_length = sampled.shape[1] - SAMPLE_LENGTH
    prompt_path = out_dir / "prompt.txt"
    prompt_path.write_bytes(bytes(sampled[0, :prompt_length].tolist()))
    print(f"\nGenerating from C++: laplace-attn-infer model.pt prompt.txt --generate "
          f"{SAMPLE_LENGTH} --text --temperature 0.7 --seed {seed}")
    cpp = run_cpp(script_path, prompt_path, out_dir / "generated_cpp.pt", "--generate",
                  SAMPLE_LENGTH, "--text", "--temperature", 0.7, "--seed", seed, echo=3)
    print(f"  the same {SAMPLE_LENGTH} bytes as Python's continuation: "
          f"{'yes' if torch.equal(cpp, sampled) else 'NO'}")

    print("\ntorch.export (any length up to 8192) + AOTInductor: aoti_compile_and_package")
    start = time.perf_counter()
    seq = torch.export.Dim("seq", min=2, max=8192)
    program = torch.export.export(model, (tokens,), dynamic_shapes=({1: seq},))
    package_path = out_dir / "model.pt2"
    torch._inductor.aoti_compile_and_package(program, package_path=str(package_path))
    print(f"  compiled in {time.perf_counter() - start:.0f} s")
    cpp = run_cpp(package_path, inputs_path, out_dir / "model_pt2_cpp_out.pt")
    print(f"  C++ vs Python: max |difference| = {(cpp - expected).abs().max().item():.2e}")
    print(f"  Python prints: first values {' '.join(f'{v:+.6f}' for v in expected.flatten()[:8])}")


# --- speed -------------------------------------------------------------------------

def best_ms(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def speed_table(lengths, width=256, heads=4):
    print(f"\nOne attention layer, forward, batch 1, width {width}, {heads} heads, float32 "
          f"({laplace_attn.build_info()['num_threads']} threads)")
    stlt = laplace_attn.STLTAttention(width, heads, num_nodes=32, causal=True,
                                      batch_first=True).eval()
    mha = nn.MultiheadAttention(width, heads, batch_first=True).eval()
    print(f"  {'N':>6} | {'STLT ms':>9} | {'softmax (SDPA) ms':>17} | {'STLT speed-up':>13}")
    for n in lengths:
        x = torch.randn(1, n, width)
        with torch.no_grad():
            t_stlt = best_ms(lambda: stlt(x, x, x, need_weights=False))
            t_sdpa = best_ms(lambda: mha(x, x, x, need_weights=False, is_causal=True,
                                         attn_mask=nn.Transformer.generate_square_subsequent_mask(n)))
        print(f"  {n:>6} | {t_stlt:>9.1f} | {t_sdpa:>17.1f} | {t_sdpa / t_stlt:>12.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="text file to learn (default: the Python standard library's sources)")
    parser.add_argument("--steps", type=int, default=500, help="training steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("demo_out"),
                        help="folder for the exported model and tensors")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384],
                        help="sequence lengths of the speed table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit's notice
    warnings.filterwarnings("ignore", category=FutureWarning)  # from torch.export's pytree
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    info = laplace_attn.build_info()
    print(f"laplace_attn {info['version']}: CPU kernels use {info['simd']}, "
          f"{info['num_threads']} threads, CUDA {'on' if info['cuda'] else 'off'}")

    data = load_bytes(args.data)
    source = args.data or "the Python standard library's sources"
    print(f"\n1. Training a causal STLT byte-level model on {len(data):,} bytes of {source}")
    model = byte_model(args.context)
    val_data, bits = train(model, data, args.steps, args.batch, args.context, args.seed)
    print(f"  validation: {bits:.3f} bits per byte (8 bits = knowing nothing)")
    prompt = bytes(val_data[:48].tolist())
    sampled, rate = continue_prompt(model, prompt, SAMPLE_LENGTH, args.seed)
    print(f"  a continuation (48 bytes of prompt, then {SAMPLE_LENGTH} sampled by "
          f"laplace_attn.generate at {rate:,.0f} bytes/s):")
    print("    " + as_text(sampled).replace("\n", "\n    "))

    print("\n2. Interpreting it")
    print_nodes(model)

    print("\n3. Exporting it and running it from C++ (laplace-attn-infer, no Python)")
    tokens = val_data[:args.context].view(1, -1)
    export_and_run(model, tokens, sampled, args.seed, args.out)

    print("\n4. Speed")
    speed_table(args.lengths)


if __name__ == "__main__":
    main()
