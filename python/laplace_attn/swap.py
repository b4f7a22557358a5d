"""swap_attention: convert a model's nn.MultiheadAttention layers."""
from typing import Callable, Optional

import torch
from torch import nn

from .laplacian import LaplacianAttention
from .stlt import STLTAttention

__all__ = ["swap_attention"]

_KINDS = ("stlt", "laplacian")


def _is_cross_attention(parent: nn.Module, name: str) -> bool:
    # nn.TransformerDecoderLayer.multihead_attn attends to the encoder memory.
    return isinstance(parent, nn.TransformerDecoderLayer) and name == "multihead_attn"


def swap_attention(model: nn.Module, kind: str = "stlt",
                   skip: Optional[Callable[[str, nn.MultiheadAttention], bool]] = None,
                   **kwargs) -> int:
    """Replaces every self-attention ``nn.MultiheadAttention`` in ``model`` (in place)
    and returns how many it replaced.

    ``kind="stlt"`` builds :class:`STLTAttention`, ``kind="laplacian"``
    :class:`LaplacianAttention`, with the same ``embed_dim``, ``num_heads``,
    ``batch_first``, ``dropout`` and bias, plus ``kwargs``, and copies the input and
    output projections. STLT is self-attention only, so for it the cross-attention of
    ``nn.TransformerDecoderLayer`` (``multihead_attn``) is left alone. Any layer for
    which ``skip(qualified_name, module)`` is true is left alone too.

    Every ``nn.TransformerEncoder`` that holds a replaced layer gets
    ``use_nested_tensor = False``: its eval-mode fast path packs padded batches into
    nested tensors, which only PyTorch's own attention reads.
    """
    if kind not in _KINDS:
        raise ValueError(f"swap_attention: kind must be one of {_KINDS}, got {kind!r}")
    targets = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if not isinstance(child, nn.MultiheadAttention):
                continue
            qualified = f"{parent_name}.{name}" if parent_name else name
            cross = kind == "stlt" and _is_cross_attention(parent, name)
            if cross or (skip is not None and skip(qualified, child)):
                continue
            if kind == "stlt" and not child._qkv_same_embed_dim:
                raise ValueError(
                    f"swap_attention(kind='stlt'): {qualified!r} has kdim={child.kdim}, "
                    f"vdim={child.vdim} != embed_dim={child.embed_dim}, so it attends to another "
                    f"sequence; STLT is self-attention only: skip it (skip=...) or use "
                    f"kind='laplacian'")
            targets.append((parent, name, child))
    convert = _to_stlt if kind == "stlt" else _to_laplacian
    for parent, name, mha in targets:
        setattr(parent, name, convert(mha, **kwargs))
    if targets:
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoder):
                module.use_nested_tensor = False
    return len(targets)


def _copy_projections(mha: nn.MultiheadAttention, new: nn.Module) -> None:
    """Copies the input and output projections; both modules use the layout of
    nn.MultiheadAttention (packed in_proj_weight, or q/k/v_proj_weight)."""
    if mha._qkv_same_embed_dim:
        weights = mha.in_proj_weight.chunk(3)
    else:
        weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
    with torch.no_grad():
        if new.in_proj_weight is not None:
            new.in_proj_weight.copy_(torch.cat(weights))
        else:
            for target, w in zip((new.q_proj_weight, new.k_proj_weight, new.v_proj_weight),
                                 weights):
                target.copy_(w)
        if mha.in_proj_bias is not None:
            new.in_proj_bias.copy_(mha.in_proj_bias)
        new.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            new.out_proj.bias.copy_(mha.out_proj.bias)


def _to_laplacian(mha: nn.MultiheadAttention, **kwargs) -> LaplacianAttention:
    ref = mha.out_proj.weight
    new = LaplacianAttention(mha.embed_dim, mha.num_heads, dropout=mha.dropout,
                             bias=mha.in_proj_bias is not None, batch_first=mha.batch_first,
                             kdim=mha.kdim, vdim=mha.vdim, device=ref.device, dtype=ref.dtype,
                             **kwargs)
    _copy_projections(mha, new)
    return new


def _to_stlt(mha: nn.MultiheadAttention, **kwargs) -> STLTAttention:
    ref = mha.out_proj.weight
    new = STLTAttention(mha.embed_dim, mha.num_heads, dropout=mha.dropout,
                        bias=mha.in_proj_bias is not None, batch_first=mha.batch_first,
                        device=ref.device, dtype=ref.dtype, **kwargs)
    _copy_projections(mha, new)
    return new
