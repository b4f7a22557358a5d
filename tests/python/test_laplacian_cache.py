"""LaplacianAttention decoding with a key-value cache: a prompt and then tokens a few at
a time give the outputs of one causal call on the whole sequence (both kernels, with and
without qk_norm and the convolution of V, with padding); TorchScript; errors."""
import pytest
import torch

import laplace_attn

E, H = 12, 2


def make(**kw):
    torch.manual_seed(0)
    layer = laplace_attn.LaplacianAttention(E, H, batch_first=True, **kw)
    with torch.no_grad():
        layer.in_proj_bias.normal_(0.0, 0.1)
    return layer.double().eval()


def streamed(layer, x, splits, pad=None, max_length=None):
    cache = layer.new_cache(x.shape[0], max_length or x.shape[1])
    outs, start = [], 0
    for size in splits:
        chunk = x[:, start:start + size]
        mask = None if pad is None else pad[:, start:start + size]
        outs.append(layer(chunk, chunk, chunk, key_padding_mask=mask, is_causal=True,
                          cache=cache)[0])
        start += size
    assert start == x.shape[1]
    return torch.cat(outs, dim=1), cache


def max_error(a, b):
    return float((a - b).detach().abs().max())


@pytest.mark.parametrize("kw", [{}, dict(qk_norm=False), dict(kernel="softmax"),
                                dict(conv_kernel_size=3), dict(conv_kernel_size=1)], ids=str)
def test_prompt_then_tokens_equal_one_causal_call(kw):
    layer = make(**kw)
    x = torch.randn(2, 20, E, dtype=torch.float64)
    whole = layer(x, x, x, is_causal=True)[0]
    got, cache = streamed(layer, x, [9, 1, 1, 4, 5], max_length=32)
    assert max_error(got, whole) <= 1e-10
    assert int(cache["length"]) == 20


@pytest.mark.parametrize("kw", [{}, dict(kernel="softmax")], ids=str)
def test_padding_in_the_stream_is_padding_of_the_whole(kw):
    layer = make(conv_kernel_size=2, **kw)
    x = torch.randn(2, 12, E, dtype=torch.float64)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[0, :4] = True  # a left-padded prompt
    pad[1, 7] = True
    whole = layer(x, x, x, key_padding_mask=pad, is_causal=True)[0]
    got, _ = streamed(layer, x, [6, 1, 1, 4], pad)
    keep = ~pad
    assert max_error(got[keep], whole[keep]) <= 1e-10


def test_gradients_flow_through_the_cache():
    layer = make()
    x = torch.randn(1, 9, E, dtype=torch.float64, requires_grad=True)
    got, _ = streamed(layer, x, [5, 1, 3])
    (g_stream,) = torch.autograd.grad(got.square().sum(), x)
    (g_whole,) = torch.autograd.grad(layer(x, x, x, is_causal=True)[0].square().sum(), x)
    assert max_error(g_stream, g_whole) <= 1e-10


def test_torchscript_decodes_like_eager():
    layer = make(conv_kernel_size=3)
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 10, E, dtype=torch.float64)
    with torch.no_grad():
        got, cache = streamed(scripted, x, [6, 1, 1, 2])
        want, _ = streamed(layer, x, [6, 1, 1, 2])
    assert max_error(got, want) <= 1e-12 and int(cache["length"]) == 10


def test_errors_name_the_problem():
    layer = laplace_attn.LaplacianAttention(E, H, batch_first=True)
    x = torch.randn(2, 5, E)
    with pytest.raises(RuntimeError, match="cannot take 5 more; make it with a larger max_length"):
        cache = layer.new_cache(2, 8)
        layer(x, x, x, is_causal=True, cache=cache)
        layer(x, x, x, is_causal=True, cache=cache)
    with pytest.raises(RuntimeError, match="a cache serves causal self-attention decoding"):
        layer(x, x, x, cache=layer.new_cache(2, 8))
    with pytest.raises(RuntimeError, match=r"must have shape \[2, 2, 8, 6\]"):
        layer(x, x, x, is_causal=True, cache=layer.new_cache(1, 8))
    with pytest.raises(RuntimeError, match=r"cache must hold the keys \['keys', 'values', "
                       r"'padding', 'length'\], as new_cache makes them; got \['keys'\]"):
        layer(x, x, x, is_causal=True, cache={"keys": layer.new_cache(2, 8)["keys"]})
    with pytest.raises(ValueError, match="max_length must be positive"):
        layer.new_cache(2, 0)
    with pytest.raises(RuntimeError, match="key_padding_mask"):
        layer(x, x, x, is_causal=True, key_padding_mask=torch.full((2, 5), -1.0),
              cache=layer.new_cache(2, 8))
