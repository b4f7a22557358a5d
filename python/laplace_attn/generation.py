"""generate: sampling from a causal language model through its decoding cache."""
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["generate", "sample_next"]


def _check_sampling(caller: str, temperature: float, top_k: int) -> None:
    if not temperature >= 0:
        raise ValueError(f"{caller}: temperature must be >= 0 (0 = the most likely token), got "
                         f"{temperature}")
    if top_k < 0:
        raise ValueError(f"{caller}: top_k must be >= 0 (0 = all tokens), got {top_k}")


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int = 0,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """One token per row of ``logits`` ``[B, V]``: the most likely for ``temperature=0``,
    otherwise a draw from ``softmax(logits / temperature)`` restricted to the ``top_k``
    most likely tokens (all for ``top_k=0``). Returns int64 ``[B]``.

    ``laplace-attn-infer --generate`` samples with the same operations, so with the same
    seed a scripted model gives the same tokens from C++."""
    _check_sampling("sample_next", temperature, top_k)
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: nn.Module, prompt: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, generator: Optional[torch.Generator] = None) -> Tensor:
    """Continues each row of ``prompt`` (int64 ``[B, n]``, n ≥ 1) by ``max_new_tokens``
    tokens and returns ``[B, n + max_new_tokens]``.

    ``model`` is a causal language model with a decoding cache, as
    :class:`laplace_attn.DecoderLM` (or its TorchScript form): ``model.new_cache(B,
    max_length)`` and ``model(tokens, cache=cache)`` returning logits ``[B, N, V]``. The
    prompt goes through in one call, then each new token alone, so every step costs
    the same for STLT whatever came before. Sampling is :func:`sample_next`. Call
    ``model.eval()`` first (dropout would sample too)."""
    if prompt.dim() != 2 or prompt.dtype != torch.int64 or prompt.shape[1] == 0:
        raise ValueError(f"generate: expected prompt of shape [B, n] with n >= 1 and dtype "
                         f"int64, got {list(prompt.shape)} {prompt.dtype}")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    _check_sampling("generate", temperature, top_k)
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + max_new_tokens)
    tokens = [prompt]
    logits = model(prompt, cache=cache)[:, -1]
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator)[:, None]
        tokens.append(token)
        if step + 1 < max_new_tokens:
            logits = model(token, cache=cache)[:, -1]
    return torch.cat(tokens, dim=1)
