"""Hugging Face transformers integration: Laplacian attention as an attention
implementation of any model that takes ``attn_implementation``.

    import laplace_attn.integrations.transformers  # registers "laplacian"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="laplacian")

transformers' layers project q, k and v (and apply their position embeddings), then
call the registered function with ``[B, H, N, D]`` tensors; it runs
:func:`laplace_attn.laplacian_attention` (exact: causal, decoding, short inputs) or
:func:`laplace_attn.nystrom_attention` (long bidirectional inputs).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

from ..laplacian import unit_rms

__all__ = ["laplacian_attention_forward", "NAME"]

NAME = "laplacian"
# Bidirectional inputs longer than this go through Nyström landmarks (LaplacianAttention's
# default); a module attribute ``num_landmarks`` overrides it.
DEFAULT_LANDMARKS = 64


def _repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Grouped-query attention: each of the K/V heads serves ``groups`` query heads."""
    if groups == 1:
        return x
    B, H, N, D = x.shape
    return x[:, :, None].expand(B, H, groups, N, D).reshape(B, H * groups, N, D)


def laplacian_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                                attention_mask: Optional[Tensor], dropout: float = 0.0,
                                scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                                **kwargs) -> Tuple[Tensor, None]:
    """transformers' attention-function contract: q ``[B, H, N, D]``, k and v ``[B, H_kv,
    M, D]`` (M > N while decoding with a cache: the queries are the last N positions),
    ``attention_mask`` the 2-D padding mask ``[B, M]`` (True/1 = a real token) or None;
    returns ``([B, N, H, D], None)``.

    q and k are scaled to unit RMS per head (``qk_norm`` of :class:`LaplacianAttention`)
    and compared with the kernel exp(-scaling * ||q - k||_1), scaling = 1/sqrt(D) unless
    the model gives one."""
    for name in ("softcap", "position_bias", "sliding_window", "s_aux"):
        if kwargs.get(name) is not None:
            raise ValueError(f"laplace_attn (attn_implementation='{NAME}'): {name} is not "
                             f"supported; use attn_implementation='sdpa' for this model")
    if kwargs.get("output_attentions"):
        raise ValueError(f"laplace_attn (attn_implementation='{NAME}'): no attention weights "
                         f"exist to output (the N x N matrix is never formed)")
    groups = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    N, M, D = query.shape[2], key.shape[2], query.shape[3]
    pad = None
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape != (query.shape[0], M):
            raise ValueError(f"laplace_attn (attn_implementation='{NAME}'): expected a padding "
                             f"mask of shape [B, M] = [{query.shape[0]}, {M}], got "
                             f"{list(attention_mask.shape)}")
        pad = ~attention_mask.bool()
    q, k = unit_rms(query), unit_rms(key)
    # float32 next to bfloat16/float16 activations (the operators' precision policy).
    lam_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    inv_lambda = torch.tensor(scaling if scaling is not None else D ** -0.5, dtype=lam_dtype,
                              device=query.device)
    landmarks = getattr(module, "num_landmarks", DEFAULT_LANDMARKS)
    if causal or N != M or N <= landmarks:
        out = torch.ops.laplace_attn.laplacian_attention(q, k, value, inv_lambda, pad, causal)
    else:
        out = torch.ops.laplace_attn.nystrom_attention(q, k, value, landmarks, "laplacian",
                                                       inv_lambda, "row", 6, pad)
    out = F.dropout(out, dropout, module.training)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, laplacian_attention_forward)
# The 2-D padding mask (or None when nothing is padded), as flash attention takes it:
# causality is the operator's own flag, aligned bottom right for decoding.
AttentionMaskInterface.register(NAME, flash_attention_mask)
