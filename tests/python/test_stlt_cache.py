"""STLTAttention decoding cache: a prompt and then tokens fed a few at a time through
new_cache/cache= give the outputs of one causal call on the whole sequence, for every
mixer, with short convolutions, adaptive gates and padding; TorchScript; errors."""
from typing import Dict

import pytest
import torch

import laplace_attn

E, H = 12, 2
MIXERS = ["plain", "gated", "multiplicative", "linear"]


def make(mixer, **kw):
    torch.manual_seed(0)
    kw.setdefault("causal", True)
    layer = laplace_attn.STLTAttention(E, H, num_nodes=3, mixer=mixer, batch_first=True, **kw)
    with torch.no_grad():  # non-zero biases and readouts, so every path carries signal
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.double().eval()


def streamed(layer, x, splits, pad=None, **call):
    cache = layer.new_cache(x.shape[0])
    outs, start = [], 0
    for size in splits:
        chunk = x[:, start:start + size]
        mask = None if pad is None else pad[:, start:start + size]
        outs.append(layer(chunk, chunk, chunk, key_padding_mask=mask, cache=cache, **call)[0])
        start += size
    assert start == x.shape[1]
    return torch.cat(outs, dim=1), cache


def max_error(a, b):
    return float((a - b).detach().abs().max())


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("short_conv", [0, 1, 3])
def test_prompt_then_tokens_equal_one_call(mixer, short_conv):
    layer = make(mixer, short_conv=short_conv)
    x = torch.randn(2, 75, E, dtype=torch.float64)
    whole = layer(x, x, x)[0]
    got, _ = streamed(layer, x, [66, 1, 1, 2, 5])  # the prompt spans a 64-token chunk
    assert max_error(got, whole) <= 1e-10


@pytest.mark.parametrize("mixer", ["multiplicative", "linear"])
def test_adaptive_layer_keeps_its_gates(mixer):
    layer = make(mixer, adaptive=True, short_conv=2)
    x = torch.randn(2, 9, E, dtype=torch.float64)
    got, _ = streamed(layer, x, [4, 1, 4])
    assert max_error(got, layer(x, x, x)[0]) <= 1e-10


@pytest.mark.parametrize("mixer", ["gated", "linear"])
def test_padding_in_the_stream_is_padding_of_the_whole(mixer):
    layer = make(mixer, short_conv=3)
    x = torch.randn(2, 10, E, dtype=torch.float64)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[0, :3] = True  # a left-padded prompt
    pad[1, 6] = True
    whole = layer(x, x, x, key_padding_mask=pad)[0]
    got, _ = streamed(layer, x, [5, 1, 1, 3], pad)
    keep = ~pad
    assert max_error(got[keep], whole[keep]) <= 1e-10


def test_bilateral_layer_streams_its_causal_call():
    layer = make("multiplicative", causal=False)
    x = torch.randn(1, 8, E, dtype=torch.float64)
    got, _ = streamed(layer, x, [3, 5], is_causal=True)
    assert max_error(got, layer(x, x, x, is_causal=True)[0]) <= 1e-10


def test_cache_is_float32_for_a_float32_layer_and_advanced_in_place():
    layer = laplace_attn.STLTAttention(E, H, num_nodes=3, causal=True, batch_first=True,
                                       short_conv=4).eval()
    cache = layer.new_cache(3)
    assert cache["state"].dtype == torch.float32 and cache["state"].shape == (3, H, 3, E // H, 2)
    assert cache["conv"].shape == (3, 3, 3 * E)
    state = cache["state"]
    x = torch.randn(3, 5, E)
    with torch.no_grad():
        layer(x, x, x, cache=cache)
    assert cache["state"] is state and state.abs().max() > 0
    assert torch.equal(cache["conv"], torch.nn.functional.linear(
        x, layer.in_proj_weight, layer.in_proj_bias)[:, 2:])


def test_gradients_flow_through_the_cache():
    layer = make("linear", short_conv=2)
    x = torch.randn(1, 7, E, dtype=torch.float64, requires_grad=True)
    got, _ = streamed(layer, x, [4, 3])
    (g_stream,) = torch.autograd.grad(got.square().sum(), x)
    (g_whole,) = torch.autograd.grad(layer(x, x, x)[0].square().sum(), x)
    assert max_error(g_stream, g_whole) <= 1e-10


@pytest.mark.parametrize("mixer", ["multiplicative", "linear"])
def test_torchscript_streams_like_eager(mixer):
    layer = make(mixer, short_conv=3)
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 9, E, dtype=torch.float64)
    got, cache = streamed(scripted, x, [6, 1, 2])
    want, want_cache = streamed(layer, x, [6, 1, 2])
    assert max_error(got, want) <= 1e-12
    assert max_error(cache["state"], want_cache["state"]) <= 1e-12


@pytest.mark.parametrize("build, call, message", [
    (dict(mode="relevance"), lambda m: m.new_cache(1), "relevance mode"),
    (dict(causal=False), lambda m: m(*[torch.randn(1, 3, E)] * 3, cache=m.new_cache(1)),
     "a cache carries the causal state"),
    (dict(), lambda m: m(*[torch.randn(2, 3, E)] * 3, cache=m.new_cache(1)),
     "cache['state'] must have shape [2, 2, 3, 6, 2]"),
    (dict(short_conv=3), lambda m: m(*[torch.randn(1, 3, E)] * 3,
                                     cache={"state": m.new_cache(1)["state"]}),
     "cache must hold the keys ['state', 'conv']"),
    (dict(), lambda m: m.new_cache(0), "batch_size must be positive"),
])
def test_errors_name_the_problem(build, call, message):
    kw = dict(num_nodes=3, batch_first=True)
    kw.setdefault("causal", True)
    kw.update(build)
    layer = laplace_attn.STLTAttention(E, H, **kw)
    with pytest.raises((RuntimeError, ValueError), match=message.replace("[", r"\[")
                       .replace("]", r"\]")):
        call(layer)


@pytest.mark.parametrize("mixer", ["multiplicative", "linear"])
def test_decoding_under_inference_mode(mixer):
    layer = make(mixer, short_conv=3)
    x = torch.randn(2, 12, E, dtype=torch.float64)
    whole = layer(x, x, x)[0]
    with torch.inference_mode():
        got, _ = streamed(layer, x, [7] + [1] * 5)
    assert max_error(got, whole) <= 1e-10


class DecodeStep(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, cache: Dict[str, torch.Tensor]):
        return self.layer(x, x, x, cache=cache)[0]


@pytest.mark.parametrize("mixer", ["multiplicative", "linear"])
def test_exported_decode_step_advances_the_cache(mixer):
    layer = make(mixer, short_conv=3)
    x = torch.randn(2, 6, E, dtype=torch.float64)
    with torch.no_grad():
        exported = torch.export.export(DecodeStep(layer), (x[:, :1], layer.new_cache(2)))
        step = exported.module()
        cache = layer.new_cache(2)
        got = torch.cat([step(x[:, i:i + 1], cache) for i in range(6)], dim=1)
        assert max_error(got, layer(x, x, x)[0]) <= 1e-10
