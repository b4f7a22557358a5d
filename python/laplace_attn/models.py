"""DecoderLM: a decoder-only language model built from this package's attention
layers, with a decoding cache for every layer."""
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .laplacian import LaplacianAttention
from .stlt import STLTAttention

__all__ = ["DecoderLM"]

_ATTENTIONS = ("stlt", "laplacian", "softmax")


def _attention(kind: str, width: int, heads: int, options: Dict) -> nn.Module:
    if kind == "stlt":
        return STLTAttention(width, heads, causal=True, batch_first=True, **options)
    if kind == "softmax":
        # The exact softmax kernel of LaplacianAttention, on raw q and k: plain softmax
        # attention (scaled_dot_product_attention) with a key-value cache.
        options = {"qk_norm": False, **options, "kernel": "softmax"}
    return LaplacianAttention(width, heads, batch_first=True, **options)


class DecoderBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, attention: nn.Module, width: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = attention
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x: Tensor, key_padding_mask: Optional[Tensor],
                cache: Optional[Dict[str, Tensor]]) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False,
                          is_causal=True, cache=cache)[0]
        return x + self.mlp(self.norm2(x))

    @torch.jit.export
    def new_cache(self, batch_size: int, max_length: int) -> Dict[str, Tensor]:
        return self.attn.new_cache(batch_size, max_length)


class DecoderLM(nn.Module):
    """Tokens ``[B, N]`` (int64) -> next-token logits ``[B, N, vocab_size]``: an
    embedding, ``layers`` pre-norm blocks of causal attention and an MLP, a final
    norm and a linear head.

    ``attention`` picks the layers: ``"stlt"`` (:class:`STLTAttention`, causal),
    ``"laplacian"`` (:class:`LaplacianAttention`) or ``"softmax"`` (its exact softmax
    kernel without ``qk_norm``: plain softmax attention, the baseline); further keyword
    arguments go to the attention layers (``num_nodes=16, mixer="linear"``...). There is
    no position embedding: the STLT scan is ordered, and the attentions see order only
    through the causal mask (and ``conv_kernel_size``, if given).

    **Decoding.** ``cache = model.new_cache(batch_size, max_length)`` makes one cache
    per layer (a fixed-size state for STLT, a key-value cache of ``max_length`` tokens
    for the attentions); ``model(tokens, cache=cache)`` consumes new tokens after those
    the cache has seen, advancing it in place, and returns their logits. A prompt in one
    call, then a token per call, gives the logits of one call on the whole sequence.
    :func:`laplace_attn.generate` samples with it; the same works in TorchScript, so
    ``laplace-attn-infer --generate`` decodes a scripted model from C++.
    """

    def __init__(self, vocab_size: int, width: int = 128, layers: int = 2, heads: int = 4,
                 attention: str = "stlt", mlp_ratio: int = 4, **attention_options) -> None:
        super().__init__()
        if vocab_size <= 0 or width <= 0 or layers <= 0 or mlp_ratio <= 0:
            raise ValueError(f"DecoderLM: vocab_size, width, layers and mlp_ratio must be "
                             f"positive, got {vocab_size}, {width}, {layers} and {mlp_ratio}")
        if attention not in _ATTENTIONS:
            raise ValueError(f"DecoderLM: attention must be one of {_ATTENTIONS}, got "
                             f"{attention!r}")
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(
            DecoderBlock(_attention(attention, width, heads, attention_options), width,
                         mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, tokens: Tensor, cache: Optional[List[Dict[str, Tensor]]] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Logits ``[B, N, vocab_size]`` of ``tokens`` ``[B, N]``. ``key_padding_mask``
        ``[B, N]`` (True = padding) hides padded tokens from the others; with a cache it
        covers this call's tokens only."""
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise RuntimeError(f"DecoderLM: expected tokens of shape [B, N] and dtype int64, got "
                               f"{list(tokens.shape)} {tokens.dtype}")
        if cache is not None and len(cache) != len(self.blocks):
            raise RuntimeError(f"DecoderLM: cache must hold one entry per layer "
                               f"({len(self.blocks)}), as new_cache makes it; got {len(cache)}")
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            layer_cache: Optional[Dict[str, Tensor]] = None
            if cache is not None:
                layer_cache = cache[i]
            x = block(x, key_padding_mask, layer_cache)
        return self.head(self.norm(x))

    @torch.jit.export
    def new_cache(self, batch_size: int, max_length: int) -> List[Dict[str, Tensor]]:
        """One decoding cache per layer, for ``batch_size`` sequences of up to
        ``max_length`` tokens in all (STLT layers' state does not depend on it)."""
        caches: List[Dict[str, Tensor]] = []
        for block in self.blocks:
            caches.append(block.new_cache(batch_size, max_length))
        return caches
