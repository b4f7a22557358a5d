"""STLTAttention: a drop-in, linear-time replacement for nn.MultiheadAttention
built on the learnable short-time Laplace transform (laplace_scan)."""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import (check_cache_keys, check_query, merge_masks, padding_bias,
                    padding_mask_to_bool, resolve_causal, same_tensor)
from .nodes import init_nodes, node_poles, unit_variance_readout
from .packing import sequence_means

__all__ = ["STLTAttention"]

_MODES = ("scan", "relevance")
_MIXERS = ("plain", "gated", "multiplicative", "linear")
_FEATURE_MAPS = ("elu", "identity")


class STLTAttention(nn.Module):
    r"""Self-attention replaced by a learnable two-sided short-time Laplace transform.

    Each head has ``num_nodes`` complex poles :math:`a_k = e^{-\sigma_k - 1/T} e^{-i\omega_k}`
    (σ = softplus(ρ) + σ_min, a per-head window T = softplus(τ_T), ω learnable). In
    ``mode="scan"`` (default) the layer mixes tokens with :func:`laplace_attn.laplace_scan`
    in O(N·S) time and memory; ``mixer`` adds data dependence at linear cost:

    * ``"plain"``: ``W_o · scan(v)`` (a learned long convolution of V),
    * ``"gated"``: ``W_o · (σ(q) ⊙ scan(v))``,
    * ``"multiplicative"``: ``W_o · (q ⊙ scan(k ⊙ v))`` (the H3/Hyena form; default),
    * ``"linear"``: ``W_o · norm(Σ_s (φ(q_t)·φ(k_s)) K(t−s) v_s)`` with the learnable
      lag kernel ``K(τ) = Re Σ_k c_k a_k^τ``: linear attention whose state per node is a
      ``head_dim × head_dim`` key–value matrix (:func:`laplace_attn.laplace_linear_attention`),
      φ = elu + 1 and a per-head RMS norm. The only mixer that looks values up by
      their keys (docs/quality.md).

    ``mode="relevance"`` compares Laplace coefficients of low-width query and key
    projections, ``R[n, m] = Σ_k Re(L_q[n, k] · conj L_k[m, k])``, and returns
    ``softmax(R / √S) · V``: quadratic, for short inputs and for fidelity to the paper.

    The call signature and return value are those of :class:`torch.nn.MultiheadAttention`,
    so it works as ``self_attn`` of ``nn.TransformerEncoderLayer``/``DecoderLayer``. It is
    a self-attention: ``key`` and ``value`` must be ``query``. ``is_causal=True``, a causal
    ``attn_mask`` or ``causal=True`` select the causal (unilateral) transform; any other
    ``attn_mask`` is an error in scan mode. ``key_padding_mask`` (True = padding) removes
    padded tokens from everything the other tokens see. ``need_weights`` returns attention
    weights in relevance mode and ``None`` in scan mode, where no N×N matrix exists.

    **Decoding.** ``cache = layer.new_cache(batch_size)`` makes the state a causal scan-mode
    layer carries between calls; ``layer(x, x, x, is_causal=True, cache=cache)`` consumes any
    number of new tokens after those the cache has seen and advances it in place (its tensors
    are overwritten, so the same works from TorchScript and C++; clone them to branch). A
    prompt in one call and then one token per call give the outputs of one call on the whole
    sequence, in time and memory independent of how many tokens came before.

    Readouts are normalised by ``sqrt(1 - |a|²)``, so every node's state has unit
    variance for white input whatever its decay, which keeps slow nodes from dominating.

    With ``adaptive=True`` each example chooses its nodes with Gumbel (binary Concrete)
    gates (:func:`laplace_attn.gumbel_node_gate`): logits from the masked mean of the input
    (bilateral) or input-independent logits (causal, so no output sees a later token).
    Hard gates (default) switch nodes off in the forward pass, so the scan skips them.
    See :meth:`regularization_loss`, :meth:`set_temperature`, :meth:`s_eff`.
    """

    __constants__ = ["embed_dim", "num_heads", "head_dim", "num_nodes", "batch_first", "causal",
                     "adaptive", "mode", "mixer", "hard_gates", "relevance_dim", "sigma_min",
                     "feature_map", "short_conv"]
    _last_gate: Optional[Tensor]
    _last_logits: Optional[Tensor]

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_nodes: int = 32,
        causal: bool = False,
        adaptive: bool = False,
        mode: str = "scan",
        mixer: str = "multiplicative",
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        expected_length: int = 1024,
        sigma_min: float = 1e-4,
        omega_max: float = math.pi / 2,
        window_fraction: float = 1.0,
        relevance_dim: int = 4,
        feature_map: str = "elu",
        short_conv: int = 0,
        tau: float = 1.0,
        hard_gates: bool = True,
        gate_init: float = 2.0,
        lambda_mask: float = 1e-3,
        target_nodes: Optional[int] = None,
        lambda_omega: float = 1e-4,
        lambda_sigma: float = 1e-4,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"STLTAttention: embed_dim ({embed_dim}) must be a positive multiple "
                             f"of num_heads ({num_heads})")
        if num_nodes <= 0:
            raise ValueError(f"STLTAttention: num_nodes must be positive, got {num_nodes}")
        if mode not in _MODES:
            raise ValueError(f"STLTAttention: mode must be one of {_MODES}, got {mode!r}")
        if mixer not in _MIXERS:
            raise ValueError(f"STLTAttention: mixer must be one of {_MIXERS}, got {mixer!r}")
        if short_conv < 0:
            raise ValueError(f"STLTAttention: short_conv (a kernel size) must be >= 0, got "
                             f"{short_conv}")
        if feature_map not in _FEATURE_MAPS:
            raise ValueError(f"STLTAttention: feature_map must be one of {_FEATURE_MAPS}, got "
                             f"{feature_map!r}")
        if (kdim is not None and kdim != embed_dim) or (vdim is not None and vdim != embed_dim):
            raise ValueError("STLTAttention is a self-attention (token-mixing) operator: kdim and "
                             f"vdim must equal embed_dim ({embed_dim}), got {kdim} and {vdim}")
        if target_nodes is not None and not (adaptive and 0 < target_nodes <= num_nodes):
            raise ValueError(f"STLTAttention: target_nodes needs adaptive=True and must be in "
                             f"[1, num_nodes = {num_nodes}], got {target_nodes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"STLTAttention: dropout must be in [0, 1), got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.num_nodes = num_nodes
        self.causal = causal
        self.adaptive = adaptive
        self.mode = mode
        self.mixer = mixer
        self.dropout = dropout
        self.batch_first = batch_first
        self.hard_gates = hard_gates
        self.relevance_dim = relevance_dim
        self.feature_map = feature_map
        self.short_conv = short_conv
        self.sigma_min = sigma_min
        self.lambda_mask = lambda_mask
        self.target_nodes = target_nodes
        self.lambda_omega = lambda_omega
        self.lambda_sigma = lambda_sigma
        # Attributes nn.TransformerEncoderLayer reads. _qkv_same_embed_dim = False turns off
        # its fused fast path, which would compute softmax attention from our weights.
        self._qkv_same_embed_dim = False
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False

        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

        H, S, D = num_heads, num_nodes, self.head_dim
        self.sigma_raw = nn.Parameter(torch.empty(H, S, **factory))
        self.omega = nn.Parameter(torch.empty(H, S, **factory))
        self.window_raw = nn.Parameter(torch.empty(H, **factory))
        # The linear mixer reads each node's matrix state out with one weight per node.
        readout_shape = (H, S, 2) if mixer == "linear" else (H, S, D, 2)
        self.c_fwd = nn.Parameter(torch.empty(readout_shape, **factory))
        if causal:
            self.register_parameter("c_bwd", None)
        else:
            self.c_bwd = nn.Parameter(torch.empty(readout_shape, **factory))
        self.out_norm = (nn.RMSNorm(D, eps=1e-5, **factory) if mixer == "linear" and
                         mode == "scan" else None)
        # A short causal depthwise convolution of q, k and v, as in H3, Mamba and GLA:
        # it lets a token's key carry its neighbours, which recall needs.
        self.qkv_conv = (nn.Conv1d(3 * embed_dim, 3 * embed_dim, short_conv,
                                   groups=3 * embed_dim, bias=False, **factory)
                         if short_conv > 0 and mode == "scan" else None)
        if adaptive and causal:
            self.gate_logits = nn.Parameter(torch.empty(H, S, **factory))
        else:
            self.register_parameter("gate_logits", None)
        self.gate_proj = (nn.Linear(embed_dim, H * S, **factory) if adaptive and not causal
                          else None)
        if mode == "relevance":
            self.rel_q = nn.Linear(embed_dim, H * relevance_dim, bias=bias, **factory)
            self.rel_k = nn.Linear(embed_dim, H * relevance_dim, bias=bias, **factory)
        else:
            self.rel_q = self.rel_k = None
        # A Python float, as gumbel_node_gate's schema takes it: under torch.compile a
        # new temperature means a recompile, so anneal in a few coarse steps there.
        self.tau = float(tau)
        self._last_gate = None
        self._last_logits = None
        self._init_parameters(expected_length, omega_max, window_fraction, gate_init)

    def _init_parameters(self, expected_length: int, omega_max: float, window_fraction: float,
                         gate_init: float):
        S = self.num_nodes
        nn.init.xavier_uniform_(self.in_proj_weight)
        init_nodes(self.sigma_raw, self.omega, self.window_raw, self.sigma_min, expected_length,
                   omega_max, window_fraction)
        with torch.no_grad():
            for c in (self.c_fwd, self.c_bwd):
                if c is None:
                    continue
                if self.mixer == "linear":
                    # Real weights 1/S: the kernel starts at K(0) = 1 in every head.
                    c.zero_()
                    c[..., 0].fill_(1.0 / S)
                else:
                    c.normal_(0.0, 1.0 / math.sqrt(S))
            # Every node starts on, close enough to the threshold that training (whose
            # optimiser moves a logit by about its learning rate per step) can switch
            # nodes off within a run.
            if self.gate_logits is not None:
                self.gate_logits.fill_(gate_init)
            if self.gate_proj is not None:
                nn.init.zeros_(self.gate_proj.weight)
                nn.init.constant_(self.gate_proj.bias, gate_init)

    @torch.jit.unused
    def __getstate__(self):
        # The last gate belongs to the autograd graph of the last forward pass; copies,
        # pickles and torch.save start without it, as a fresh module does.
        state = super().__getstate__().copy()
        state["_last_gate"] = None
        state["_last_logits"] = None
        return state

    # --- the transform's parameters -------------------------------------------------

    def poles(self) -> Tuple[Tensor, Tensor]:
        """(decay, freq), each [H, S]: decay = σ + 1/T, freq = ω."""
        return node_poles(self.sigma_raw, self.omega, self.window_raw, self.sigma_min)

    def _readout(self, c: Tensor, decay: Tensor) -> Tensor:
        if self.mixer == "linear":
            # The per-head norm after the readout sets the scale.
            return c
        return unit_variance_readout(c, decay)

    def set_temperature(self, tau: float) -> None:
        """Sets the Gumbel temperature (adaptive mode)."""
        if tau <= 0:
            raise ValueError(f"STLTAttention: tau must be positive, got {tau}")
        self.tau = float(tau)

    def anneal_temperature(self, step: int, total_steps: int, tau_start: float = 1.0,
                           tau_end: float = 0.1) -> float:
        """Exponential annealing from tau_start to tau_end over total_steps; returns tau."""
        frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
        tau = tau_start * (tau_end / tau_start) ** frac
        self.set_temperature(tau)
        return tau

    def gate_parameters(self) -> List[nn.Parameter]:
        """The node gates' parameters (empty unless adaptive), for an optimiser group of
        their own: a short run needs a larger learning rate for them (docs/modules.md)."""
        gates = [self.gate_logits] if self.gate_logits is not None else []
        if self.gate_proj is not None:
            gates += list(self.gate_proj.parameters())
        return gates

    def _gates(self, x: Tensor, pad: Optional[Tensor], causal: bool,
               cu_seqlens: Optional[Tensor] = None) -> Optional[Tensor]:
        if not self.adaptive:
            return None
        # Packed sequences: a gate per sequence.
        B = x.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1
        if self.gate_logits is not None:
            # Causal: input-independent logits, so no output can see a later token.
            logits = self.gate_logits[None].expand(B, self.num_heads, self.num_nodes)
        else:
            if causal:
                raise RuntimeError("STLTAttention: a bilateral adaptive layer pools the whole "
                                   "input for its gates and cannot run causally; build it "
                                   "with causal=True")
            assert self.gate_proj is not None
            if cu_seqlens is not None:
                pooled = sequence_means(x, cu_seqlens)
            elif pad is None:
                pooled = x.mean(dim=1)
            else:
                keep = (~pad).to(x.dtype)[:, :, None]
                pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
            logits = self.gate_proj(pooled).view(B, self.num_heads, self.num_nodes)
        noise = torch.rand_like(logits) if self.training else None
        gate = torch.ops.laplace_attn.gumbel_node_gate(logits, noise, self.tau,
                                                       self.hard_gates, self.training)
        # Kept for regularization_loss() and s_eff(); an exported graph has no use for
        # them, and torch.export warns about tensors stored on a module.
        if torch.jit.is_scripting():
            exporting = False
        else:
            exporting = torch.compiler.is_exporting()
        if not exporting:
            self._last_gate = gate
            self._last_logits = logits
        return gate

    # --- forward ----------------------------------------------------------------------

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
        check_query("STLTAttention", query, self.embed_dim, self.batch_first)
        if not (same_tensor(query, key) and same_tensor(query, value)):
            raise RuntimeError("STLTAttention is a self-attention (token-mixing) operator: key "
                               "and value must be the query tensor; cross-attention is not "
                               "supported")
        x = query if self.batch_first else query.transpose(0, 1)
        B, N = x.shape[0], x.shape[1]
        causal = resolve_causal("STLTAttention", self.causal, is_causal, attn_mask, N, self.mode == "scan")
        if cache is not None:
            self._check_cache(cache, B, causal)
        if cu_seqlens is not None:
            self._check_packed(cache, key_padding_mask)
        # Scan mode cannot add logits; relevance mode is a softmax and can.
        relevance = self.mode == "relevance"
        pad = padding_mask_to_bool("STLTAttention", key_padding_mask, B, N, relevance)
        if not relevance:
            out = self._scan(x, pad, causal, cache, cu_seqlens)
            weights: Optional[Tensor] = None
        else:
            out, weights = self._relevance(x, pad, padding_bias(key_padding_mask), causal,
                                           need_weights, average_attn_weights)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _check_packed(self, cache: Optional[Dict[str, Tensor]],
                      key_padding_mask: Optional[Tensor]) -> None:
        if self.mode != "scan" or self.mixer == "linear" or self.qkv_conv is not None:
            raise RuntimeError("STLTAttention: cu_seqlens (packed sequences) needs mode='scan', "
                               "a mixer other than 'linear' and short_conv=0")
        if cache is not None or key_padding_mask is not None:
            raise RuntimeError("STLTAttention: cu_seqlens (packed sequences) takes no cache and "
                               "no key_padding_mask (a packed batch has no padding)")

    # --- decoding cache -------------------------------------------------------------

    @torch.jit.export
    def new_cache(self, batch_size: int, max_length: Optional[int] = None) -> Dict[str, Tensor]:
        """An empty decoding cache for ``batch_size`` sequences: ``"state"``, each node's
        causal state in float32 (float64 for a float64 layer), ``[B, H, S, D, 2]`` or, for
        the linear mixer, the key-value matrices ``[B, H, S, D, D, 2]``; with ``short_conv``
        also ``"conv"``, the last ``short_conv - 1`` projected tokens ``[B, short_conv - 1,
        3 * embed_dim]``. Pass it as ``cache=`` with each causal call. Its size does not
        depend on the length decoded: ``max_length`` is accepted, so that every layer
        takes :class:`LaplacianAttention`'s call, and not needed."""
        if self.mode != "scan":
            raise RuntimeError("STLTAttention: relevance mode compares every pair of tokens "
                               "and has no recurrent state; new_cache needs mode='scan'")
        if batch_size <= 0:
            raise ValueError(f"STLTAttention: new_cache: batch_size must be positive, got "
                             f"{batch_size}")
        weight = self.in_proj_weight
        state_dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
        shapes = self._cache_shapes(batch_size)
        cache = {"state": torch.zeros(shapes["state"], dtype=state_dtype, device=weight.device)}
        if "conv" in shapes:
            cache["conv"] = torch.zeros(shapes["conv"], dtype=weight.dtype, device=weight.device)
        return cache

    def _cache_shapes(self, batch: int) -> Dict[str, List[int]]:
        H, S, D = self.num_heads, self.num_nodes, self.head_dim
        state = [batch, H, S, D, D, 2] if self.mixer == "linear" else [batch, H, S, D, 2]
        shapes = {"state": state}
        if self.qkv_conv is not None:
            shapes["conv"] = [batch, self.short_conv - 1, 3 * self.embed_dim]
        return shapes

    def _check_cache(self, cache: Dict[str, Tensor], batch: int, causal: bool) -> None:
        if self.mode != "scan":
            raise RuntimeError("STLTAttention: relevance mode has no recurrent state; cache "
                               "needs mode='scan'")
        if not causal:
            raise RuntimeError("STLTAttention: a cache carries the causal state; a bilateral "
                               "call needs the whole sequence at once. Build the layer with "
                               "causal=True or pass is_causal=True")
        shapes = self._cache_shapes(batch)
        check_cache_keys("STLTAttention", cache, list(shapes.keys()))
        for name, want in shapes.items():
            got = list(cache[name].shape)
            if got != want:
                raise RuntimeError(f"STLTAttention: cache['{name}'] must have shape {want} "
                                   f"(new_cache for batch size {batch}), got {got}")

    @staticmethod
    def _cached_state(cache: Optional[Dict[str, Tensor]]) -> Optional[Tensor]:
        if cache is None:
            return None
        # The cache is overwritten after the call; a graph that keeps the state for
        # backward gets its own copy (then gradients flow through the cache across calls).
        state = cache["state"]
        return state.clone() if torch.is_grad_enabled() else state

    def _scan(self, x: Tensor, pad: Optional[Tensor], causal: bool,
              cache: Optional[Dict[str, Tensor]], cu_seqlens: Optional[Tensor] = None) -> Tensor:
        B, N = x.shape[0], x.shape[1]
        H, D = self.num_heads, self.head_dim
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        if self.qkv_conv is not None:
            qkv = self._short_conv(qkv, pad, causal, cache)
        q, k, v = qkv.chunk(3, dim=-1)
        if self.mixer == "linear":
            return self._linear(x, q, k, v, pad, causal, cache)
        u = (k * v) if self.mixer == "multiplicative" else v
        if pad is not None:
            u = u.masked_fill(pad[:, :, None], 0.0)
        decay, freq = self.poles()
        c_fwd = self._readout(self.c_fwd, decay)
        c_bwd: Optional[Tensor] = None
        if not causal and self.c_bwd is not None:
            c_bwd = self._readout(self.c_bwd, decay)
        gate = self._gates(x, pad, causal, cu_seqlens)
        state = self._cached_state(cache)
        y, final, _ = torch.ops.laplace_attn.laplace_scan(u.reshape(B, N, H, D).contiguous(),
                                                          decay, freq, c_fwd, c_bwd, gate, state,
                                                          None, cu_seqlens)
        if cache is not None:
            cache["state"].copy_(final)
        y = y.reshape(B, N, self.embed_dim)
        if self.mixer == "gated":
            y = torch.sigmoid(q) * y
        elif self.mixer == "multiplicative":
            y = q * y
        y = F.dropout(y, self.dropout, self.training)
        return self.out_proj(y)

    def _short_conv(self, qkv: Tensor, pad: Optional[Tensor], causal: bool,
                    cache: Optional[Dict[str, Tensor]]) -> Tensor:
        assert self.qkv_conv is not None
        if pad is not None:
            qkv = qkv.masked_fill(pad[:, :, None], 0.0)
        size = self.short_conv
        if cache is not None:
            # The tokens before this call take the place of the causal zero padding.
            h = torch.cat([cache["conv"].to(qkv.dtype), qkv], dim=1)
            cache["conv"].copy_(h[:, h.shape[1] - (size - 1):])
            return self.qkv_conv(h.transpose(1, 2)).transpose(1, 2)
        left = size - 1 if causal else size // 2
        h = F.pad(qkv.transpose(1, 2), (left, size - 1 - left))
        return self.qkv_conv(h).transpose(1, 2)

    def _linear(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pad: Optional[Tensor],
                causal: bool, cache: Optional[Dict[str, Tensor]]) -> Tensor:
        B, N = x.shape[0], x.shape[1]
        H, D = self.num_heads, self.head_dim
        if self.feature_map == "elu":
            # elu + 1 keeps every similarity positive, so no lookup cancels another.
            q = F.elu(q) + 1.0
            k = F.elu(k) + 1.0
        k = k / math.sqrt(D)
        if pad is not None:
            k = k.masked_fill(pad[:, :, None], 0.0)
        decay, freq = self.poles()
        c_bwd: Optional[Tensor] = None if causal or self.c_bwd is None else self.c_bwd
        gate = self._gates(x, pad, causal)
        state = self._cached_state(cache)
        y, final, _ = torch.ops.laplace_attn.laplace_linear_attention(
            q.reshape(B, N, H, D), k.reshape(B, N, H, D), v.reshape(B, N, H, D), decay, freq,
            self.c_fwd, c_bwd, gate, state, None, cache is not None)
        if cache is not None:
            cache["state"].copy_(final)
        assert self.out_norm is not None
        y = self.out_norm(y).reshape(B, N, self.embed_dim)
        y = F.dropout(y, self.dropout, self.training)
        return self.out_proj(y)

    def _relevance(self, x: Tensor, pad: Optional[Tensor], bias: Optional[Tensor], causal: bool,
                   need_weights: bool,
                   average_attn_weights: bool) -> Tuple[Tensor, Optional[Tensor]]:
        B, N = x.shape[0], x.shape[1]
        H, D, S, P = self.num_heads, self.head_dim, self.num_nodes, self.relevance_dim
        assert self.rel_q is not None and self.rel_k is not None
        v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)[2]
        pq = self.rel_q(x)
        pk = self.rel_k(x)
        if pad is not None:
            pq = pq.masked_fill(pad[:, :, None], 0.0)
            pk = pk.masked_fill(pad[:, :, None], 0.0)
        decay, freq = self.poles()
        gate = self._gates(x, pad, causal)

        fq = self._coefficients(pq, decay, freq, gate, causal)
        fk = self._coefficients(pk, decay, freq, gate, causal)
        vh = v.view(B, N, H, D).transpose(1, 2)
        if pad is not None:
            vh = vh.masked_fill(pad[:, None, :, None], 0.0)
        # allowed[b, n, m]: key m is visible to query n. Every query keeps itself, so a
        # padded query never has an empty row (0/0); no real query sees a padded key.
        allowed: Optional[Tensor] = None
        if pad is not None or causal:
            allowed = torch.ones(B, N, N, dtype=torch.bool, device=x.device)
            if causal:
                allowed = allowed & torch.ones(N, N, dtype=torch.bool, device=x.device).tril()
            if pad is not None:
                allowed = allowed & ~pad[:, None, :]
            allowed = allowed | torch.eye(N, dtype=torch.bool, device=x.device)
            allowed = allowed[:, None]
        # The additive part of a float key_padding_mask joins the logits, as in
        # nn.MultiheadAttention.
        logit_mask: Optional[Tensor] = None
        if allowed is not None:
            logit_mask = torch.zeros(allowed.shape, dtype=fq.dtype, device=x.device)
            logit_mask = logit_mask.masked_fill(~allowed, float("-inf"))
        if bias is not None:
            added = bias.to(fq.dtype)[:, None, None, :]
            logit_mask = added if logit_mask is None else logit_mask + added
        scale = 1.0 / math.sqrt(S)
        dropout_p = self.dropout if self.training else 0.0
        returned: Optional[Tensor] = None
        if need_weights:
            scores = torch.matmul(fq, fk.transpose(-1, -2)) * scale
            if logit_mask is not None:
                scores = scores + logit_mask
            weights = F.dropout(torch.softmax(scores, dim=-1), dropout_p, self.training)
            z = torch.matmul(weights, vh)
            returned = weights.mean(dim=1) if average_attn_weights else weights
        else:
            z = F.scaled_dot_product_attention(fq, fk, vh, attn_mask=logit_mask,
                                               dropout_p=dropout_p, scale=scale)
        out = self.out_proj(z.transpose(1, 2).reshape(B, N, self.embed_dim))
        return out, returned

    def _coefficients(self, p: Tensor, decay: Tensor, freq: Tensor, gate: Optional[Tensor],
                      causal: bool) -> Tensor:
        """Laplace coefficients of p [B, N, H*P] as features [B, H, N, S*P*2], whose dot
        products are Re(L_n conj L_m) summed over nodes and channels."""
        B, N = p.shape[0], p.shape[1]
        H, S, P = self.num_heads, self.num_nodes, self.relevance_dim
        L = torch.ops.laplace_attn.laplace_transform(p.reshape(B, N, H, P), decay, freq,
                                                     not causal, None, None)
        if gate is not None:
            L = L * gate[:, None, :, :, None, None]
        return L.permute(0, 2, 1, 3, 4, 5).reshape(B, H, N, S * P * 2)

    # --- adaptive allocation and interpretation ---------------------------------------

    def merge_masks(self, attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor],
                    query: Tensor) -> Tuple[Optional[Tensor], Optional[int]]:
        """As :meth:`torch.nn.MultiheadAttention.merge_masks` (read by
        ``nn.TransformerEncoderLayer``)."""
        return merge_masks(attn_mask, key_padding_mask, query, self.num_heads)

    def regularization_loss(self) -> Tensor:
        """mask + λ_ω·Σ|ω|·m + λ_σ·(smoothness of log σ across nodes), with m the mean
        gate of the last forward pass (all ones when not adaptive).

        The mask term is λ_mask·Σm, or, with ``target_nodes``, a budget: λ_mask times the
        summed probability, sigmoid(logit), of being on of every node outside its head's
        ``target_nodes`` largest logits. It pushes down only the least important nodes, so
        the task decides which nodes stay and a head never loses the ones within budget (a
        penalty on every node moves their logits together and switches them off together).
        """
        sigma = F.softplus(self.sigma_raw) + self.sigma_min
        gate = self._last_gate
        m = gate.mean(dim=0) if gate is not None else torch.ones_like(sigma)
        log_sigma = torch.sort(torch.log(sigma), dim=-1).values
        smooth = (log_sigma[:, 2:] - 2 * log_sigma[:, 1:-1] + log_sigma[:, :-2]).square().sum()
        logits = self._last_logits
        target = self.target_nodes
        if target is not None and logits is not None:
            kept = torch.topk(logits.detach(), target, dim=-1).indices
            over_budget = torch.ones_like(logits).scatter(-1, kept, 0.0)
            mask = (torch.sigmoid(logits) * over_budget).sum() / logits.shape[0]
        else:
            mask = m.sum()
        return (self.lambda_mask * mask + self.lambda_omega * (self.omega.abs() * m).sum()
                + self.lambda_sigma * smooth)

    def s_eff(self) -> float:
        """Mean number of active nodes per head and example in the last forward pass."""
        gate = self._last_gate
        if gate is None:
            return float(self.num_nodes)
        return float(gate.detach().sum(dim=-1).mean())

    @torch.jit.unused
    def describe_nodes(self) -> List[Dict[str, float]]:
        """Per node: head, node, half-life ln2/σ_eff (steps), period 2π/ω (steps, inf
        for ω = 0), and the gate probability when adaptive and causal."""
        decay, freq = (t.detach() for t in self.poles())
        rows = []
        probs = (torch.sigmoid(self.gate_logits.detach() / self.tau)
                 if self.gate_logits is not None else None)
        for h in range(self.num_heads):
            for k in range(self.num_nodes):
                w = abs(float(freq[h, k]))
                row = {"head": h, "node": k, "half_life": math.log(2.0) / float(decay[h, k]),
                       "period": 2 * math.pi / w if w > 0 else math.inf}
                if probs is not None:
                    row["gate_probability"] = float(probs[h, k])
                rows.append(row)
        return rows

    @torch.jit.unused
    def kernel(self, length: int) -> Tuple[Tensor, Tensor]:
        """The learned impulse responses K(t) per head and channel for t = 0..length-1:
        (causal K+, anticausal K-) as [H, D, length] (K- is zero for a causal layer); the
        linear mixer's kernel, which weighs whole key-value products, as [H, 1, length]."""
        from .reference import laplace_kernel

        if length < 0:
            raise ValueError(f"STLTAttention.kernel: expected length >= 0, got {length}")
        decay, freq = self.poles()

        def readout(c: Tensor) -> Tensor:
            c = self._readout(c, decay)
            return c[:, :, None, :] if self.mixer == "linear" else c

        with torch.no_grad():
            k_fwd = laplace_kernel(decay, freq, readout(self.c_fwd), length)
            if self.c_bwd is None:
                return k_fwd, torch.zeros_like(k_fwd)
            k_bwd = laplace_kernel(decay, freq, readout(self.c_bwd), length)
            k_bwd[..., :1] = 0.0
        return k_fwd, k_bwd
