"""Hugging Face transformers integration: Laplacian attention and STLT as attention
implementations of any model that takes ``attn_implementation``.

    import laplace_attn.integrations.transformers as lt  # registers "laplacian", "stlt"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="laplacian")
    lt.enable_stlt(model, num_nodes=16)  # adds STLT's nodes, then uses "stlt"

transformers' layers project q, k and v (and apply their position embeddings), then
call the registered function with ``[B, H, N, D]`` tensors. "laplacian" runs
:func:`laplace_attn.laplacian_attention` (exact: causal, decoding, short inputs) or
:func:`laplace_attn.nystrom_attention` (long bidirectional inputs); "stlt" runs the
multiplicative STLT mixer ``q ⊙ scan(k ⊙ v)`` with :func:`laplace_attn.laplace_scan`, on
learnable Laplace nodes that :func:`enable_stlt` adds to every attention module.
"""
import math
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
try:
    from transformers import AttentionInterface
    from transformers.cache_utils import Cache, CacheLayerMixin
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
except ImportError as error:
    raise ImportError("laplace_attn.integrations.transformers needs transformers >= 5.0: pip "
                      "install \"laplace_attn[transformers]\" (or pip install transformers)"
                      ) from error

from ..laplacian import unit_rms
from ..nodes import init_nodes, node_poles, unit_variance_readout
from ..packing import cu_seqlens_from_position_ids

__all__ = ["laplacian_attention_forward", "stlt_attention_forward", "enable_stlt", "STLTNodes",
           "STLTCache", "NAME", "STLT_NAME"]

NAME = "laplacian"
STLT_NAME = "stlt"
# Bidirectional inputs longer than this go through Nyström landmarks (LaplacianAttention's
# default); a module attribute ``num_landmarks`` overrides it.
DEFAULT_LANDMARKS = 64


def _repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Grouped-query attention: each of the K/V heads serves ``groups`` query heads."""
    if groups == 1:
        return x
    B, H, N, D = x.shape
    return x[:, :, None].expand(B, H, groups, N, D).reshape(B, H * groups, N, D)


def _common_inputs(name: str, module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                   attention_mask: Optional[Tensor], is_causal: Optional[bool], kwargs: dict
                   ) -> Tuple[Tensor, Tensor, bool, Optional[Tensor]]:
    """Checks what neither implementation supports; returns k and v with one head per
    query head, whether the call is causal, and the padding (True = padded) [B, M]."""
    for option in ("softcap", "position_bias", "sliding_window", "s_aux"):
        if kwargs.get(option) is not None:
            raise ValueError(f"laplace_attn (attn_implementation='{name}'): {option} is not "
                             f"supported; use attn_implementation='sdpa' for this model")
    if kwargs.get("output_attentions"):
        raise ValueError(f"laplace_attn (attn_implementation='{name}'): no attention weights "
                         f"exist to output (the N x N matrix is never formed)")
    groups = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    pad = None
    if attention_mask is not None:
        B, M = query.shape[0], key.shape[2]
        if attention_mask.dim() != 2 or attention_mask.shape != (B, M):
            raise ValueError(f"laplace_attn (attn_implementation='{name}'): expected a padding "
                             f"mask of shape [B, M] = [{B}, {M}], got "
                             f"{list(attention_mask.shape)}")
        pad = ~attention_mask.bool()
    return key, value, causal, pad


def _packed_offsets(query: Tensor, key: Tensor, kwargs: dict) -> Optional[Tensor]:
    """The offsets of a packed batch (one row of sequences back to back): transformers'
    ``cu_seq_lens_q`` when a packing collator gave them, else read from position ids that
    restart inside the row (as its flash-attention path reads them); None otherwise."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        positions = kwargs.get("position_ids")
        N = query.shape[2]
        if positions is None or query.shape[0] != 1 or N == 1 or key.shape[2] != N:
            return None
        expected = torch.arange(N, device=positions.device) + positions.min()
        if bool((positions.reshape(-1) == expected).all()):
            return None
        cu = cu_seqlens_from_position_ids(positions)
    cu_k = kwargs.get("cu_seq_lens_k")
    if cu_k is not None and not torch.equal(cu_k.to(cu.device, torch.int64),
                                            cu.to(torch.int64)):
        raise ValueError("laplace_attn: packed sequences with different query and key offsets "
                         "(cu_seq_lens_q != cu_seq_lens_k) are not supported")
    return cu.to(torch.int32)


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
    key, value, causal, pad = _common_inputs(NAME, module, query, key, value, attention_mask,
                                             is_causal, kwargs)
    N, M, D = query.shape[2], key.shape[2], query.shape[3]
    q, k = unit_rms(query), unit_rms(key)
    # float32 next to bfloat16/float16 activations (the operators' precision policy).
    lam_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    inv_lambda = torch.tensor(scaling if scaling is not None else D ** -0.5, dtype=lam_dtype,
                              device=query.device)
    landmarks = getattr(module, "num_landmarks", DEFAULT_LANDMARKS)
    cu = _packed_offsets(query, key, kwargs)
    if causal or N != M or N <= landmarks:
        out = torch.ops.laplace_attn.laplacian_attention(q, k, value, inv_lambda, pad, causal,
                                                         cu, None)
    else:
        out = torch.ops.laplace_attn.nystrom_attention(q, k, value, landmarks, "laplacian",
                                                       inv_lambda, "row", 6,
                                                       pad if cu is None else None, cu)
    out = F.dropout(out, dropout, module.training)
    return out.transpose(1, 2).contiguous(), None


class STLTNodes(nn.Module):
    """The Laplace nodes of one attention module (as :class:`laplace_attn.STLTAttention`
    has them): per head, ``num_nodes`` poles (``sigma_raw``, ``omega``, ``window_raw``)
    and readouts ``c_fwd`` (and ``c_bwd`` for a bidirectional module), ``[H, S, D, 2]``."""

    def __init__(self, heads: int, head_dim: int, num_nodes: int, causal: bool,
                 expected_length: int = 1024, sigma_min: float = 1e-4,
                 omega_max: float = math.pi / 2, window_fraction: float = 1.0, device=None,
                 dtype=None) -> None:
        super().__init__()
        if num_nodes <= 0 or expected_length <= 0:
            raise ValueError(f"enable_stlt: num_nodes and expected_length must be positive, got "
                             f"{num_nodes} and {expected_length}")
        factory = {"device": device, "dtype": dtype}
        H, S, D = heads, num_nodes, head_dim
        self.sigma_min = sigma_min
        self.sigma_raw = nn.Parameter(torch.empty(H, S, **factory))
        self.omega = nn.Parameter(torch.empty(H, S, **factory))
        self.window_raw = nn.Parameter(torch.empty(H, **factory))
        self.c_fwd = nn.Parameter(torch.empty(H, S, D, 2, **factory))
        self.c_bwd = None if causal else nn.Parameter(torch.empty(H, S, D, 2, **factory))
        self.active_cache: Optional[Cache] = None  # the model call's cache, if any
        init_nodes(self.sigma_raw, self.omega, self.window_raw, sigma_min, expected_length,
                   omega_max, window_fraction)
        with torch.no_grad():
            for c in (self.c_fwd, self.c_bwd):
                if c is not None:
                    c.normal_(0.0, 1.0 / math.sqrt(S))

    def poles(self) -> Tuple[Tensor, Tensor]:
        """(decay, freq), each [H, S]."""
        return node_poles(self.sigma_raw, self.omega, self.window_raw, self.sigma_min)


class STLTCacheLayer(CacheLayerMixin):
    """One layer of :class:`STLTCache`: the causal state of the layer's nodes, ``[B, H,
    S, D, 2]``, and the number of tokens it has seen; keys and values are not kept."""

    is_sliding = False

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.state: Optional[Tensor] = None
        self.seen = 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: Tensor, value_states: Tensor, *args,
               **kwargs) -> Tuple[Tensor, Tensor]:
        # The attention sees this call's tokens only; the past is in the state.
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.seen += key_states.shape[-2]
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> Tuple[int, int]:
        return query_length, 0  # the padding mask of this call's tokens

    def get_seq_length(self) -> int:
        return self.seen

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.state, self.seen = None, 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.state is not None:
            self.state = self.state.index_select(0, beam_idx.to(self.state.device))


class STLTCache(Cache):
    """A transformers cache for models with ``attn_implementation="stlt"``: per layer
    STLT's recurrent state instead of keys and values, so each generated token costs
    the same whatever came before. ``model.generate(..., cache=STLTCache())``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(layer_class_to_replicate=STLTCacheLayer)


def _remember_cache(module: nn.Module, args: tuple, kwargs: dict) -> None:
    # transformers hands the cache to the attention module, not to the attention
    # function: keep it where the function finds it, for the duration of the call.
    module.stlt_nodes.active_cache = kwargs.get("cache", kwargs.get("past_key_values"))


def _forget_cache(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
    module.stlt_nodes.active_cache = None


def _is_attention_module(module: nn.Module) -> bool:
    # transformers' attention modules call the registered function with themselves as
    # `module`; they carry these attributes for it.
    return hasattr(module, "is_causal") and hasattr(module, "scaling") and \
        not isinstance(module, STLTNodes)


def _saved_nodes(folder: str) -> dict:
    """The STLT node tensors of a checkpoint folder written by save_pretrained."""
    from safetensors.torch import load_file
    tensors = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        tensors.update({k: v for k, v in load_file(str(path)).items() if ".stlt_nodes." in k})
    return tensors


def enable_stlt(model: nn.Module, num_nodes: int = 16, expected_length: int = 1024,
                from_pretrained: Optional[str] = None, **node_options) -> int:
    """Adds :class:`STLTNodes` (``module.stlt_nodes``) to every attention module of a
    transformers ``model`` and switches it to ``attn_implementation="stlt"``; returns how
    many modules got nodes. Create the optimizer afterwards, so it sees the new
    parameters. ``node_options``: ``sigma_min``, ``omega_max``, ``window_fraction`` as in
    :class:`STLTAttention`.

    The options go into ``model.config.laplace_attn_stlt`` and the nodes into the
    ``state_dict``, so ``save_pretrained`` keeps both. To load: ``model =
    AutoModelForCausalLM.from_pretrained(folder)`` (which sets the nodes aside: the stock
    model has no place for them), then ``enable_stlt(model, from_pretrained=folder)``,
    which rebuilds the nodes with the saved options and loads their values."""
    if not hasattr(model, "config") or not hasattr(model, "set_attn_implementation"):
        raise ValueError(f"enable_stlt: expected a transformers model (a PreTrainedModel), got "
                         f"{type(model).__name__}")
    if from_pretrained is not None:
        saved = getattr(model.config, "laplace_attn_stlt", None)
        if not isinstance(saved, dict):
            raise ValueError(f"enable_stlt: {from_pretrained!r} was not saved from a model with "
                             f"STLT nodes (its config has no laplace_attn_stlt)")
        num_nodes, expected_length = saved["num_nodes"], saved["expected_length"]
        node_options = saved["node_options"]
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    count = 0
    for module in list(model.modules()):
        if not _is_attention_module(module):
            continue
        reference = next(module.parameters())
        module.stlt_nodes = STLTNodes(heads, head_dim, num_nodes, bool(module.is_causal),
                                      expected_length, device=reference.device,
                                      dtype=reference.dtype, **node_options)
        if not getattr(module, "_laplace_attn_hooks", False):
            module.register_forward_pre_hook(_remember_cache, with_kwargs=True)
            module.register_forward_hook(_forget_cache, with_kwargs=True)
            module._laplace_attn_hooks = True
        count += 1
    if count == 0:
        raise ValueError("enable_stlt: the model has no attention module of transformers' "
                         "attention interface (modules with is_causal and scaling)")
    model.config.laplace_attn_stlt = {"num_nodes": num_nodes, "expected_length": expected_length,
                                      "node_options": dict(node_options)}
    if from_pretrained is not None:
        tensors = _saved_nodes(from_pretrained)
        wanted = {k for k in model.state_dict() if ".stlt_nodes." in k}
        if set(tensors) != wanted:
            raise ValueError(f"enable_stlt: {from_pretrained!r} holds {len(tensors)} STLT node "
                             f"tensors, the model needs {len(wanted)}; missing: "
                             f"{sorted(wanted - set(tensors))[:3]}")
        model.load_state_dict(tensors, strict=False)
    model.set_attn_implementation(STLT_NAME)
    return count


def stlt_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                           attention_mask: Optional[Tensor], dropout: float = 0.0,
                           scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                           **kwargs) -> Tuple[Tensor, None]:
    """The multiplicative STLT mixer on transformers' projections: ``q ⊙ scan(k ⊙ v)``,
    the scan causal or bilateral as the module is, over the module's
    ``stlt_nodes``. With an :class:`STLTCache` the scan starts from the layer's state and
    leaves its final state there: O(1) per generated token. With transformers' key-value
    caches (M > N keys) it runs over all M cached positions and keeps the last N
    outputs: exact, at O(M) per step. ``scaling`` is not used (there is no softmax)."""
    nodes = getattr(module, "stlt_nodes", None)
    if not isinstance(nodes, STLTNodes):
        raise RuntimeError(f"laplace_attn (attn_implementation='{STLT_NAME}'): this attention "
                           f"module has no STLT nodes; call laplace_attn.integrations."
                           f"transformers.enable_stlt(model), which adds them and sets the "
                           f"implementation")
    key, value, causal, pad = _common_inputs(STLT_NAME, module, query, key, value,
                                             attention_mask, is_causal, kwargs)
    if not causal and nodes.c_bwd is None:
        raise RuntimeError(f"laplace_attn (attn_implementation='{STLT_NAME}'): a bidirectional "
                           f"call on nodes made for a causal module (enable_stlt reads "
                           f"module.is_causal)")
    layer = None
    if isinstance(nodes.active_cache, STLTCache):
        if not causal:
            raise RuntimeError(f"laplace_attn (attn_implementation='{STLT_NAME}'): STLTCache "
                               f"carries a causal state; this call is bidirectional")
        layer = nodes.active_cache.layers[module.layer_idx]
    N, M = query.shape[2], key.shape[2]
    cu = _packed_offsets(query, key, kwargs)
    if cu is not None and layer is not None:
        raise RuntimeError(f"laplace_attn (attn_implementation='{STLT_NAME}'): STLTCache "
                           f"carries one state per row; it cannot decode packed sequences")
    u = key * value
    if pad is not None:
        u = u.masked_fill(pad[:, None, :, None], 0.0)
    decay, freq = nodes.poles()
    c_fwd = unit_variance_readout(nodes.c_fwd, decay)
    c_bwd = None
    if not causal:
        assert nodes.c_bwd is not None
        c_bwd = unit_variance_readout(nodes.c_bwd, decay)
    y, final, _ = torch.ops.laplace_attn.laplace_scan(u.transpose(1, 2).contiguous(), decay, freq,
                                                      c_fwd, c_bwd, None,
                                                      None if layer is None else layer.state, None,
                                                      cu)
    if layer is not None:
        layer.state = final
    out = query.transpose(1, 2) * y[:, M - N:]
    out = F.dropout(out, dropout, module.training)
    return out.contiguous(), None


AttentionInterface.register(NAME, laplacian_attention_forward)
AttentionInterface.register(STLT_NAME, stlt_attention_forward)
# The 2-D padding mask (or None when nothing is padded), as flash attention takes it:
# causality is the operator's own flag (Laplacian: aligned bottom right for decoding).
for _name in (NAME, STLT_NAME):
    AttentionMaskInterface.register(_name, flash_attention_mask)
