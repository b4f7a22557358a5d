"""LaplacianAttention: nn.MultiheadAttention with the L1 Laplacian kernel,
linear in the sequence length through Nyström landmarks."""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import (check_cache_keys, check_query, merge_masks, padding_bias,
                    padding_mask_to_bool, resolve_causal, same_tensor)

__all__ = ["LaplacianAttention"]

_KERNELS = ("laplacian", "softmax")
_NORMALIZATIONS = ("row", "injective")


def unit_rms(x: Tensor) -> Tensor:
    """x scaled to unit root-mean-square over its last dimension (statistics in float32)."""
    scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    return x * scale.to(x.dtype)


class LaplacianAttention(nn.Module):
    r"""Attention with the kernel :math:`\kappa(q, k) = \exp(-\lVert q - k\rVert_1 / \lambda)`
    in place of softmax, made linear with a Nyström approximation whose landmark matrix
    is inverted by Newton–Schulz iteration (:func:`laplace_attn.nystrom_attention`).

    The call signature and return value are those of :class:`torch.nn.MultiheadAttention`
    (self- and cross-attention, ``key_padding_mask``, ``batch_first``). Calls that are
    causal (``is_causal=True`` or a causal ``attn_mask``), cross-attention calls, inputs
    no longer than ``num_landmarks`` and ``exact=True`` use the exact fused operator
    :func:`laplace_attn.laplacian_attention` (O(N) memory, quadratic time): landmarks
    would see the future. The bandwidth is learnable per head (``learn_bandwidth``).
    ``conv_kernel_size`` adds a depthwise convolution of V over the sequence, as
    Nyströmformer and LaplacianFormer do (causal padding on causal calls).
    ``qk_norm`` (default) scales each head's query and key vectors to unit RMS before the
    kernel: the L1 distance compares coordinates, not directions, so without it a query
    matches only keys of its own magnitude (see docs/quality.md, recall).
    ``cache = layer.new_cache(batch_size, max_length)`` and ``cache=`` on causal calls decode
    with a key-value cache (written in place), the queries aligned with the last keys.
    ``need_weights`` returns ``None``: no N×N matrix is formed.
    """

    __constants__ = ["embed_dim", "num_heads", "head_dim", "num_landmarks", "kernel",
                     "normalization", "ns_iters", "exact", "batch_first", "conv_kernel_size",
                     "qk_norm"]

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_landmarks: int = 64,
        kernel: str = "laplacian",
        normalization: str = "row",
        ns_iters: int = 6,
        conv_kernel_size: int = 0,
        exact: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        learn_bandwidth: bool = True,
        inv_lambda: Optional[float] = None,
        qk_norm: bool = True,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"LaplacianAttention: embed_dim ({embed_dim}) must be a positive "
                             f"multiple of num_heads ({num_heads})")
        if kernel not in _KERNELS:
            raise ValueError(f"LaplacianAttention: kernel must be one of {_KERNELS}, got "
                             f"{kernel!r}")
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"LaplacianAttention: normalization must be one of "
                             f"{_NORMALIZATIONS}, got {normalization!r}")
        if num_landmarks <= 0:
            raise ValueError(f"LaplacianAttention: num_landmarks must be positive, got "
                             f"{num_landmarks}")
        if conv_kernel_size < 0:
            raise ValueError(f"LaplacianAttention: conv_kernel_size must be >= 0, got "
                             f"{conv_kernel_size}")
        if inv_lambda is not None and not (0.0 < inv_lambda < math.inf):
            raise ValueError(f"LaplacianAttention: inv_lambda (1 / bandwidth) must be positive "
                             f"and finite, got {inv_lambda}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.num_landmarks = num_landmarks
        self.kernel = kernel
        self.normalization = normalization
        self.ns_iters = ns_iters
        self.conv_kernel_size = conv_kernel_size
        self.exact = exact
        self.qk_norm = qk_norm
        self.dropout = dropout
        self.batch_first = batch_first
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        # Attributes nn.TransformerEncoderLayer reads; _qkv_same_embed_dim = False
        # turns off its fused softmax fast path, which would bypass this module.
        self._qkv_same_embed_dim = False
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False

        # The projections are laid out as nn.MultiheadAttention's (one packed
        # in_proj_weight when key and value have embed_dim features, separate
        # q/k/v_proj_weight otherwise), so their state_dicts are interchangeable.
        E = embed_dim
        if self.kdim == E and self.vdim == E:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * E, E, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = nn.Parameter(torch.empty(E, E, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(E, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(E, self.vdim, **factory))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * E, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(E, E, bias=bias, **factory)
        for weight in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight,
                       self.v_proj_weight):
            if weight is not None:
                nn.init.xavier_uniform_(weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)
        # inv_lambda = exp(log_inv_lambda) > 0; 1/sqrt(D) gives scores spread like softmax's
        # (with unit-RMS q and k, random pairs' logits spread by about 1).
        init = inv_lambda if inv_lambda is not None else 1.0 / math.sqrt(self.head_dim)
        log_init = torch.full((num_heads,), math.log(init), **factory)
        if learn_bandwidth:
            self.log_inv_lambda = nn.Parameter(log_init)
        else:
            self.register_buffer("log_inv_lambda", log_init)
        if conv_kernel_size > 0:
            self.conv = nn.Conv1d(embed_dim, embed_dim, conv_kernel_size, groups=embed_dim,
                                  bias=False, **factory)
        else:
            self.conv = None

    def inv_lambda(self) -> Tensor:
        """1 / bandwidth per head, [H]."""
        return torch.exp(self.log_inv_lambda)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = True,
        attn_mask: Optional[Tensor] = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        cache: Optional[Dict[str, Tensor]] = None,
        cu_seqlens: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        check_query("LaplacianAttention", query, self.embed_dim, self.batch_first)
        if not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        B, N, M = query.shape[0], query.shape[1], key.shape[1]
        H, D = self.num_heads, self.head_dim
        self_attention = same_tensor(query, key)
        causal = resolve_causal("LaplacianAttention", False, is_causal, attn_mask, N, True)
        if cache is not None:
            self._check_cache(cache, B, causal, self_attention)
        if cu_seqlens is not None:
            self._check_packed(cache, key_padding_mask, self_attention)
        use_exact = self.exact or causal or not self_attention or N <= self.num_landmarks
        # The exact paths add a float mask to the logits; landmarks can only drop keys (and
        # a cache keeps which keys are padding, not logits).
        pad = padding_mask_to_bool("LaplacianAttention", key_padding_mask, B, M,
                                   use_exact and cache is None)
        bias = padding_bias(key_padding_mask) if cache is None else None

        q, k, v = self._project(query, key, value, self_attention)
        q = q.view(B, N, H, D).transpose(1, 2)
        k = k.view(B, M, H, D).transpose(1, 2)
        v = v.view(B, M, H, D).transpose(1, 2)
        if self.qk_norm:
            q, k = unit_rms(q), unit_rms(k)
        if pad is not None:
            v = v.masked_fill(pad[:, None, :, None], 0.0)
        conv_window = v
        if cache is not None:
            k, v, pad, conv_window = self._extend_cache(cache, k, v, pad)
        lam = self.inv_lambda()  # float32 next to low-precision q (the precision policy)
        if use_exact and self.kernel == "laplacian":
            mask = pad
            if bias is not None and pad is not None:
                mask = bias.to(q.dtype).masked_fill(pad, float("-inf"))
            z = torch.ops.laplace_attn.laplacian_attention(q, k, v, lam, mask, causal,
                                                           cu_seqlens, None)
        elif use_exact:
            z = self._softmax_attention(q, k, v, pad, bias, causal)
        else:
            z = torch.ops.laplace_attn.nystrom_attention(q, k, v, self.num_landmarks, self.kernel,
                                                         lam, self.normalization, self.ns_iters,
                                                         pad, cu_seqlens)
        if self.conv is not None and self_attention:
            z = z + self._conv_residual(conv_window, causal)[:, :, conv_window.shape[2] - N:]
        z = F.dropout(z, self.dropout, self.training)
        out = self.out_proj(z.transpose(1, 2).reshape(B, N, self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None

    def _check_packed(self, cache: Optional[Dict[str, Tensor]],
                      key_padding_mask: Optional[Tensor], self_attention: bool) -> None:
        if self.kernel != "laplacian" or self.conv is not None or not self_attention:
            raise RuntimeError("LaplacianAttention: cu_seqlens (packed sequences) needs "
                               "kernel='laplacian', no conv_kernel_size and self-attention")
        if not self.exact and self.normalization != "row":
            raise RuntimeError("LaplacianAttention: cu_seqlens (packed sequences) with landmarks "
                               "needs normalization='row'")
        if cache is not None or key_padding_mask is not None:
            raise RuntimeError("LaplacianAttention: cu_seqlens (packed sequences) takes no cache "
                               "and no key_padding_mask (a packed batch has no padding)")

    # --- decoding cache -------------------------------------------------------------

    @torch.jit.export
    def new_cache(self, batch_size: int, max_length: int) -> Dict[str, Tensor]:
        """An empty key-value cache for causal decoding of up to ``max_length`` tokens:
        ``"keys"`` and ``"values"`` ``[B, H, max_length, D]`` (keys as the kernel sees them,
        after ``qk_norm``), ``"padding"`` ``[B, max_length]`` (True = a padded token) and
        ``"length"``, the number of tokens held (``[1]``, int64)."""
        if batch_size <= 0 or max_length <= 0:
            raise ValueError(f"LaplacianAttention: new_cache: batch_size and max_length must be "
                             f"positive, got {batch_size} and {max_length}")
        weight = self.out_proj.weight
        H, D = self.num_heads, self.head_dim
        kv = [batch_size, H, max_length, D]
        return {"keys": torch.zeros(kv, dtype=weight.dtype, device=weight.device),
                "values": torch.zeros(kv, dtype=weight.dtype, device=weight.device),
                "padding": torch.zeros(batch_size, max_length, dtype=torch.bool,
                                       device=weight.device),
                "length": torch.zeros(1, dtype=torch.int64, device=weight.device)}

    def _check_cache(self, cache: Dict[str, Tensor], batch: int, causal: bool,
                     self_attention: bool) -> None:
        if not causal or not self_attention:
            raise RuntimeError("LaplacianAttention: a cache serves causal self-attention "
                               "decoding: pass is_causal=True and key = value = query")
        check_cache_keys("LaplacianAttention", cache, ["keys", "values", "padding", "length"])
        got = list(cache["keys"].shape)
        want = [batch, self.num_heads, got[2] if len(got) == 4 else -1, self.head_dim]
        if got != want or list(cache["values"].shape) != got:
            raise RuntimeError(f"LaplacianAttention: cache['keys'] and cache['values'] must have "
                               f"shape {want} (new_cache for batch size {batch}), got {got} and "
                               f"{list(cache['values'].shape)}")

    def _extend_cache(self, cache: Dict[str, Tensor], k: Tensor, v: Tensor,
                      pad: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Writes the new keys, values and padding after those held; returns all keys,
        values and padding so far, and the values the convolution of V reads."""
        held, N = int(cache["length"].item()), k.shape[2]
        capacity = cache["keys"].shape[2]
        if held + N > capacity:
            raise RuntimeError(f"LaplacianAttention: the cache holds {held} of at most "
                               f"{capacity} tokens and cannot take {N} more; make it with a "
                               f"larger max_length")
        total = held + N
        cache["keys"][:, :, held:total] = k
        cache["values"][:, :, held:total] = v
        if pad is None:
            cache["padding"][:, held:total] = False
        else:
            cache["padding"][:, held:total] = pad
        cache["length"].add_(N)
        keys, values = cache["keys"][:, :, :total], cache["values"][:, :, :total]
        padding = cache["padding"][:, :total]
        if torch.is_grad_enabled():
            # Later calls write into the cache; a graph that keeps these for backward
            # gets its own copies.
            keys, values, padding = keys.clone(), values.clone(), padding.clone()
        start = max(0, held - (self.conv_kernel_size - 1)) if self.conv is not None else held
        return keys, values, padding, values[:, :, start:]

    def _softmax_attention(self, q: Tensor, k: Tensor, v: Tensor, pad: Optional[Tensor],
                           bias: Optional[Tensor], causal: bool) -> Tensor:
        """Exact softmax attention (kernel="softmax"); a row that sees no key is 0."""
        z = self._softmax_rows(q, k, v, pad, bias, causal)
        # PyTorch's fused CPU attention returns 0 for a query row holding NaN, where
        # the softmax is NaN: put the NaN back.
        return z.masked_fill(~torch.isfinite(q).all(-1, keepdim=True), float("nan"))

    def _softmax_rows(self, q: Tensor, k: Tensor, v: Tensor, pad: Optional[Tensor],
                      bias: Optional[Tensor], causal: bool) -> Tensor:
        B, N, M = k.shape[0], q.shape[2], k.shape[2]
        if pad is None and bias is None and (not causal or N == M):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        logits = torch.zeros(B, 1, 1, M, dtype=q.dtype, device=q.device)
        if bias is not None:
            logits = logits + bias.to(q.dtype)[:, None, None, :]
        if pad is not None:
            logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
        visible = torch.ones(N, M, dtype=torch.bool, device=q.device)
        if causal:
            # Bottom right, as laplacian_attention: the queries are the last N keys.
            visible = visible.tril(M - N)
            logits = logits.masked_fill(~visible, float("-inf"))
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=logits)
        # Only rows with no visible key are zeroed, so NaN in the inputs stays NaN.
        if pad is None:
            return z
        blind = ~(visible[None, None] & ~pad[:, None, None, :]).any(-1, keepdim=True)
        return z.masked_fill(blind, 0.0)

    def _project(self, query: Tensor, key: Tensor, value: Tensor,
                 self_attention: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """The input projections W_q query, W_k key, W_v value (plus biases)."""
        packed = self.in_proj_weight
        bias = self.in_proj_bias
        if packed is not None and self_attention and value is query:
            q, k, v = F.linear(query, packed, bias).chunk(3, dim=-1)
            return q, k, v
        if packed is not None:
            w_q, w_k, w_v = packed.chunk(3)
        else:
            assert self.q_proj_weight is not None and self.k_proj_weight is not None
            assert self.v_proj_weight is not None
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q: Optional[Tensor] = None
        b_k: Optional[Tensor] = None
        b_v: Optional[Tensor] = None
        if bias is not None:
            b_q, b_k, b_v = bias.chunk(3)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def merge_masks(self, attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor],
                    query: Tensor) -> Tuple[Optional[Tensor], Optional[int]]:
        """As :meth:`torch.nn.MultiheadAttention.merge_masks` (read by
        ``nn.TransformerEncoderLayer``)."""
        return merge_masks(attn_mask, key_padding_mask, query, self.num_heads)

    def _conv_residual(self, v: Tensor, causal: bool) -> Tensor:
        """Depthwise convolution of V along the sequence; causal calls pad on the left."""
        assert self.conv is not None
        B, H, N, D = v.shape
        if N == 0:
            return torch.zeros_like(v)
        x = v.transpose(1, 2).reshape(B, N, H * D).transpose(1, 2)  # [B, E, N]
        size = self.conv_kernel_size
        left = size - 1 if causal else size // 2
        x = F.pad(x, (left, size - 1 - left))
        return self.conv(x).transpose(1, 2).reshape(B, N, H, D).transpose(1, 2)
