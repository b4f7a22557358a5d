"""DecoderLM with decoding caches, generate() and sample_next(), and the same from C++
(laplace-attn-infer --generate). References re-run the whole sequence without a cache."""
import subprocess

import pytest
import torch

import laplace_attn
from laplace_attn import DecoderLM, generate, sample_next

VOCAB = 40
MODELS = {
    "stlt multiplicative": ("stlt", {"num_nodes": 8}),
    "stlt linear conv4": ("stlt", {"num_nodes": 4, "mixer": "linear", "short_conv": 4}),
    "stlt adaptive": ("stlt", {"num_nodes": 8, "adaptive": True}),
    "stlt gated": ("stlt", {"num_nodes": 8, "mixer": "gated"}),
    "laplacian conv3": ("laplacian", {"conv_kernel_size": 3}),
    "softmax": ("softmax", {}),
}


def make_model(name, dtype=torch.float64, width=32, layers=2):
    torch.manual_seed(0)
    attention, options = MODELS[name]
    return DecoderLM(VOCAB, width, layers, 4, attention=attention, **options).to(dtype).eval()


def decode_in_pieces(model, tokens, prefill, padding=None):
    """Logits of a prompt of ``prefill`` tokens in one call, then one call per token."""
    cache = model.new_cache(tokens.shape[0], tokens.shape[1])
    head = None if padding is None else padding[:, :prefill]
    pieces = [model(tokens[:, :prefill], cache=cache, key_padding_mask=head)]
    for t in range(prefill, tokens.shape[1]):
        pieces.append(model(tokens[:, t:t + 1], cache=cache))
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@torch.no_grad()
def test_prefill_then_single_tokens_equal_one_call(name, dtype, tol):
    model = make_model(name, dtype)
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    want = model(tokens)
    got = decode_in_pieces(model, tokens, prefill=9)
    err = (got - want).abs().max().item()
    assert err <= tol * max(1.0, want.abs().max().item()), f"{name}: {err}"


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_left_padded_batch_decodes_as_one_call(name):
    model = make_model(name)
    tokens = torch.randint(0, VOCAB, (3, 20), generator=torch.Generator().manual_seed(2))
    padding = torch.zeros(3, 20, dtype=torch.bool)
    padding[1, :4] = True
    padding[2, :9] = True
    want = model(tokens, key_padding_mask=padding)
    got = decode_in_pieces(model, tokens, prefill=10, padding=padding)
    err = (got - want)[~padding].abs().max().item()
    assert err <= 1e-12, f"{name}: {err}"
    # A padded row continues exactly as the same row without its padding.
    alone = model(tokens[2:, 9:])
    err = (got[2:, 9:] - alone).abs().max().item()
    assert err <= 1e-12, f"{name}: padded row vs unpadded: {err}"


@pytest.mark.parametrize("name", ["stlt multiplicative", "stlt linear conv4", "laplacian conv3"])
@torch.no_grad()
def test_each_row_of_a_batched_cache_decodes_as_its_sequence_alone(name):
    model = make_model(name)
    tokens = torch.randint(0, VOCAB, (3, 16), generator=torch.Generator().manual_seed(9))
    together = decode_in_pieces(model, tokens, prefill=5)
    for row in range(3):
        alone = decode_in_pieces(model, tokens[row:row + 1], prefill=5)
        err = (together[row:row + 1] - alone).abs().max().item()
        assert err <= 1e-12, f"{name}, row {row}: {err}"


@torch.no_grad()
def test_new_cache_restarts_the_stream():
    model = make_model("stlt multiplicative")
    tokens = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(3))
    first = decode_in_pieces(model, tokens, prefill=4)
    second = decode_in_pieces(model, tokens, prefill=4)
    assert torch.equal(first, second)


def greedy_reference(model, prompt, steps):
    """Greedy decoding that re-runs the whole sequence for every token."""
    tokens = prompt
    for _ in range(steps):
        logits = model(tokens)[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize("name", ["stlt multiplicative", "stlt linear conv4", "laplacian conv3"])
@torch.no_grad()
def test_greedy_generate_matches_rerunning_the_prefix(name):
    model = make_model(name)
    prompt = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(4))
    got = generate(model, prompt, 15, temperature=0.0)
    assert got.shape == (2, 21)
    assert torch.equal(got[:, :6], prompt)
    assert torch.equal(got, greedy_reference(model, prompt, 15))


@torch.no_grad()
def test_sampling_follows_the_seed_and_stays_in_the_top_k():
    model = make_model("stlt multiplicative")
    prompt = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(5))

    def run(seed):
        return generate(model, prompt, 12, temperature=0.8, top_k=3,
                        generator=torch.Generator().manual_seed(seed))

    first = run(7)
    assert torch.equal(first, run(7))
    assert not torch.equal(first, run(8))
    logits = model(first[:, :-1])[:, 4:]  # the logits each new token was drawn from
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == first[:, 5:, None]).any(-1).all()


def test_sample_next_draws_from_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -50.0]]).expand(20000, 4)
    draws = sample_next(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    want = torch.softmax(logits[0].double(), -1)
    assert (freq - want).abs().max().item() <= 0.015
    hot = sample_next(logits, temperature=0.25, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(hot.unique().tolist()) <= {1, 2}
    assert torch.equal(sample_next(logits[:2], temperature=0.0), torch.tensor([2, 2]))


@pytest.mark.parametrize("name", ["stlt multiplicative", "stlt linear conv4", "laplacian conv3"])
@torch.no_grad()
def test_scripted_model_generates_the_same_tokens(name):
    model = make_model(name, torch.float32)
    scripted = torch.jit.script(model)
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(6))
    for temperature, top_k in [(0.0, 0), (1.0, 5)]:
        want = generate(model, prompt, 10, temperature, top_k, torch.Generator().manual_seed(1))
        got = generate(scripted, prompt, 10, temperature, top_k, torch.Generator().manual_seed(1))
        assert torch.equal(got, want)


def test_bad_arguments_name_what_was_expected():
    model = make_model("stlt multiplicative")
    prompt = torch.zeros(1, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="generate: expected prompt of shape"):
        generate(model, prompt.float(), 2)
    with pytest.raises(ValueError, match="generate: expected prompt of shape"):
        generate(model, prompt[:, :0], 2)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate(model, prompt, -1)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, prompt, 2, temperature=float("nan"))
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        sample_next(torch.zeros(1, 4), top_k=-2)
    with pytest.raises(RuntimeError, match="one entry per layer"):
        model(prompt, cache=model.new_cache(1, 8)[:1])
    with pytest.raises(RuntimeError, match=r"expected tokens of shape \[B, N\] and dtype int64"):
        model(prompt.float())
    with pytest.raises(ValueError, match="attention must be one of"):
        DecoderLM(10, attention="flash")
    laplacian = make_model("laplacian conv3")
    with pytest.raises(RuntimeError, match="cannot take 3 more"):
        laplacian(prompt, cache=laplacian.new_cache(1, 2))


# --- from C++ ------------------------------------------------------------------------

def run_program(*args):
    return subprocess.run([laplace_attn.infer_program(), *map(str, args)], capture_output=True)


@pytest.fixture(scope="module")
def scripted_byte_model(tmp_path_factory):
    torch.manual_seed(0)
    model = DecoderLM(256, 32, 2, 4, num_nodes=8, mixer="linear", short_conv=4).eval()
    scripted = torch.jit.script(model)
    path = tmp_path_factory.mktemp("generate") / "lm.pt"
    scripted.save(str(path))
    return scripted, path


@pytest.mark.parametrize("temperature, top_k, seed", [(0.0, 0, 0), (0.9, 20, 3), (1.0, 0, 11)])
def test_cpp_generates_pythons_tokens(scripted_byte_model, temperature, top_k, seed, tmp_path):
    scripted, path = scripted_byte_model
    prompt = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(seed))
    torch.save(prompt, tmp_path / "prompt.pt")
    result = run_program(path, tmp_path / "prompt.pt", "--generate", 25, "--temperature",
                         temperature, "--top-k", top_k, "--seed", seed, "--output",
                         tmp_path / "out.pt")
    assert result.returncode == 0, result.stderr.decode()
    want = generate(scripted, prompt, 25, temperature, top_k,
                    torch.Generator().manual_seed(seed))
    got = torch.load(tmp_path / "out.pt")
    assert torch.equal(got, want)
    stdout = result.stdout.decode()
    assert "ms/token" in stdout
    assert f"row 1: {' '.join(map(str, want[1, 9:].tolist()))}" in stdout


def test_cpp_generates_text_from_a_text_prompt(scripted_byte_model, tmp_path):
    scripted, path = scripted_byte_model
    text = b"def main():\n    return"
    (tmp_path / "prompt.txt").write_bytes(text)
    result = run_program(path, tmp_path / "prompt.txt", "--generate", 16, "--text",
                         "--temperature", 0)
    assert result.returncode == 0, result.stderr.decode()
    prompt = torch.tensor([list(text)])
    want = bytes(generate(scripted, prompt, 16, temperature=0.0)[0].tolist())
    assert want in result.stdout


def test_cpp_generate_refuses_what_it_cannot_run(scripted_byte_model, tmp_path):
    _, path = scripted_byte_model
    torch.save(torch.zeros(1, 4), tmp_path / "floats.pt")
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "linear.pt"))
    torch.save(torch.zeros(1, 4, dtype=torch.int64), tmp_path / "prompt.pt")
    torch.save(torch.full((1, 4), 300), tmp_path / "unknown.pt")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "model.pt2").write_bytes(b"a compiled package")
    cases = [
        ((path, tmp_path / "floats.pt", "--generate", 4),
         "--generate expects PROMPT to hold one int64 tensor of token ids [B, n] with B, n >= 1 "
         "(or a text file with --text), got [1, 4] Float"),
        ((tmp_path / "linear.pt", tmp_path / "prompt.pt", "--generate", 4),
         "--generate: the model has no new_cache method"),
        ((tmp_path / "model.pt2", tmp_path / "prompt.pt", "--generate", 4),
         "--generate runs TorchScript models"),
        ((path, tmp_path / "unknown.pt", "--generate", 4),
         "the model rejected the prompt of shape [1, 4] Long: "),
        ((path, tmp_path / "prompt.pt", "--generate", 0), "--generate expects an integer from 1"),
        ((path, tmp_path / "prompt.pt", "--temperature", 1), "go with --generate N"),
        ((path, tmp_path / "prompt.pt", "--generate", 2, "--temperature", -1),
         "--temperature expects a number >= 0"),
        ((path, tmp_path / "empty.txt", "--generate", 2, "--text"),
         "prompt file"),
    ]
    for args, message in cases:
        result = run_program(*args)
        assert result.returncode == 2, (args, result.stderr)
        stderr = result.stderr.decode()
        assert stderr.startswith("laplace-attn-infer: ") and message in stderr, (args, stderr)
