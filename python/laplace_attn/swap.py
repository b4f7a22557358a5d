"""swap_attention: convert a model's nn.MultiheadAttention layers."""
from typing import Callable, Optional

import torch
from torch import nn

from .stlt import STLTAttention

__all__ = ["swap_attention"]

_KINDS = ("stlt",)


def _is_cross_attention(parent: nn.Module, name: str) -> bool:
    # nn.TransformerDecoderLayer.multihead_attn attends to the encoder memory.
    return isinstance(parent, nn.TransformerDecoderLayer) and name == "multihead_attn"


def swap_attention(model: nn.Module, kind: str = "stlt",
                   skip: Optional[Callable[[str, nn.MultiheadAttention], bool]] = None,
                   **kwargs) -> int:
    """Replaces every self-attention ``nn.MultiheadAttention`` in ``model`` (in place)
    and returns how many it replaced.

    ``kind="stlt"`` builds :class:`STLTAttention` with the same ``embed_dim``,
    ``num_heads``, ``batch_first``, ``dropout`` and bias, plus ``kwargs``, and copies
    the input and output projections. Cross-attention (``multihead_attn`` of
    ``nn.TransformerDecoderLayer``) is left alone, and so is any layer for which
    ``skip(qualified_name, module)`` is true.
    """
    if kind not in _KINDS:
        raise ValueError(f"swap_attention: kind must be one of {_KINDS}, got {kind!r}")
    targets = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if not isinstance(child, nn.MultiheadAttention):
                continue
            qualified = f"{parent_name}.{name}" if parent_name else name
            if _is_cross_attention(parent, name) or (skip is not None and skip(qualified, child)):
                continue
            targets.append((parent, name, child))
    for parent, name, mha in targets:
        setattr(parent, name, _to_stlt(mha, **kwargs))
    return len(targets)


def _to_stlt(mha: nn.MultiheadAttention, **kwargs) -> STLTAttention:
    ref = mha.out_proj.weight
    new = STLTAttention(mha.embed_dim, mha.num_heads, dropout=mha.dropout,
                        bias=mha.in_proj_bias is not None, batch_first=mha.batch_first,
                        device=ref.device, dtype=ref.dtype, **kwargs)
    with torch.no_grad():
        if mha._qkv_same_embed_dim:
            new.in_proj_weight.copy_(mha.in_proj_weight)
        else:
            new.in_proj_weight.copy_(torch.cat([mha.q_proj_weight, mha.k_proj_weight,
                                                mha.v_proj_weight]))
        if mha.in_proj_bias is not None:
            new.in_proj_bias.copy_(mha.in_proj_bias)
        new.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            new.out_proj.bias.copy_(mha.out_proj.bias)
    return new
