"""The nn.MultiheadAttention call conventions (layouts and masks), read the way
linear attention needs them."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor


def check_query(module: str, query: Tensor, embed_dim: int, batch_first: bool) -> None:
    """Raises unless ``query`` is a dense [B, N, E] (batch_first) or [N, B, E]."""
    if query.is_nested:
        raise RuntimeError(f"{module}: nested tensor input is not supported; build "
                           f"nn.TransformerEncoder with enable_nested_tensor=False (or convert "
                           f"it with laplace_attn.swap_attention, which does)")
    if query.dim() != 3 or query.shape[-1] != embed_dim:
        layout = "[B, N, E]" if batch_first else "[N, B, E]"
        raise RuntimeError(f"{module}: expected query of shape {layout} with E = {embed_dim}, "
                           f"got {list(query.shape)}")


def check_cache_keys(module: str, cache: Dict[str, Tensor], names: List[str]) -> None:
    """Raises unless a decoding cache holds exactly the entries ``names``."""
    same_keys = len(cache) == len(names)
    for name in names:
        same_keys = same_keys and name in cache
    if not same_keys:
        raise RuntimeError(f"{module}: cache must hold the keys {names}, as new_cache makes "
                           f"them; got {list(cache.keys())}")


def _check_padding_shape(module: str, key_padding_mask: Tensor, batch: int, length: int) -> None:
    if key_padding_mask.shape != (batch, length):
        raise RuntimeError(f"{module}: expected key_padding_mask of shape [B, N] = [{batch}, "
                           f"{length}], got {list(key_padding_mask.shape)}")
    if key_padding_mask.dtype != torch.bool and not key_padding_mask.is_floating_point():
        raise RuntimeError(f"{module}: expected key_padding_mask of dtype bool (True = padding) "
                           f"or float (added to the attention logits), got "
                           f"{key_padding_mask.dtype}")


def padding_mask_to_bool(module: str, key_padding_mask: Optional[Tensor], batch: int,
                         length: int, additive_ok: bool = False) -> Optional[Tensor]:
    """``key_padding_mask`` [B, N] as a bool tensor (True = padding), checked.

    A float mask is added to the attention logits (nn.MultiheadAttention's rule); an
    entry <= -1e4 (-inf, -1e9, finfo.min) makes its key's weight exp(entry) exactly 0 in
    every floating dtype, so it is padding. Where the
    caller cannot add logits (``additive_ok=False``), every other entry must be 0, and
    anything else is an error naming the value; the check reads the mask, so it runs in
    eager mode only and the mask is trusted while tracing.
    """
    if key_padding_mask is None:
        return None
    _check_padding_shape(module, key_padding_mask, batch, length)
    if key_padding_mask.dtype == torch.bool:
        return key_padding_mask
    pad = key_padding_mask <= -1e4
    tracing = torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    if not additive_ok and not tracing:
        other = (key_padding_mask != 0) & ~pad
        if bool(other.any()):
            value = float(key_padding_mask[other][0])
            raise RuntimeError(
                f"{module}: a float key_padding_mask is added to the attention logits, which "
                f"this path cannot represent: expected entries of 0 (keep) or <= -1e4 "
                f"(padding, e.g. -inf or -1e9), got {value}; pass a bool mask (True = "
                f"padding)")
    return pad


def padding_bias(key_padding_mask: Optional[Tensor]) -> Optional[Tensor]:
    """The finite additive part of a float ``key_padding_mask`` (padding entries set to
    0, since they are removed as padding), or None when there is none to add."""
    if key_padding_mask is None or key_padding_mask.dtype == torch.bool:
        return None
    return key_padding_mask.masked_fill(key_padding_mask <= -1e4, 0.0)


def same_tensor(a: Tensor, b: Tensor) -> bool:
    """True iff ``b`` is ``a`` or holds the same values, NaN equal to NaN (so a copy of
    a query with NaN in it is still self-attention)."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def is_causal_mask(attn_mask: Tensor, length: int) -> bool:
    """True iff ``attn_mask`` is the standard [N, N] causal mask: bool with True above
    the diagonal, or float with -inf above it and 0 elsewhere."""
    if attn_mask.dim() != 2 or attn_mask.shape[0] != length or attn_mask.shape[1] != length:
        return False
    future = torch.ones(length, length, dtype=torch.bool, device=attn_mask.device).triu(1)
    if attn_mask.dtype == torch.bool:
        return bool(torch.equal(attn_mask, future))
    return bool(torch.equal(torch.isneginf(attn_mask), future)
                and torch.all(attn_mask.masked_fill(future, 0.0) == 0))


def resolve_causal(module: str, module_causal: bool, is_causal: bool,
                   attn_mask: Optional[Tensor], length: int, causal_mask_only: bool) -> bool:
    """Whether a call is causal. An ``attn_mask`` must be causal where only causal
    masks are supported; it is checked in eager mode and trusted while tracing."""
    causal = module_causal or is_causal
    if attn_mask is None:
        return causal
    tracing = torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
    if tracing:
        if not causal and causal_mask_only:
            raise RuntimeError(f"{module}: attn_mask while tracing: pass is_causal=True with a "
                               f"causal mask (only causal masks are supported)")
        return True
    if is_causal_mask(attn_mask, length):
        return True
    if causal_mask_only:
        raise RuntimeError(f"{module}: only a causal attn_mask is supported (the standard [N, N] "
                           f"mask with True or -inf above the diagonal); pass key_padding_mask "
                           f"for padding")
    return causal


def merge_masks(attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], query: Tensor,
                num_heads: int) -> Tuple[Optional[Tensor], Optional[int]]:
    """``nn.MultiheadAttention.merge_masks``: one mask and its type (0 attention,
    1 padding, 2 both merged to [B, H, N, N]) for a batch-first ``query``.

    ``nn.TransformerEncoderLayer`` calls it on its fused path, which our modules
    switch off; it exists so that the layer compiles under ``torch.jit.script``.
    """
    if attn_mask is None:
        return key_padding_mask, (None if key_padding_mask is None else 1)
    batch, length = query.shape[0], query.shape[1]
    if attn_mask.dim() == 3:
        merged = attn_mask.view(batch, num_heads, -1, length)
    else:
        merged = attn_mask.view(1, 1, length, length).expand(batch, num_heads, -1, -1)
    if key_padding_mask is not None:
        padding = key_padding_mask.view(batch, 1, 1, length).expand(-1, num_heads, -1, -1)
        merged = merged + padding
    return merged, 2
