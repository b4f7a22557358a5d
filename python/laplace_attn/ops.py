"""Python entry points of the laplace_attn operators, and their fake kernels.

The fake (meta) kernels compute output shapes only; they let ``torch.compile``
(``fullgraph=True``) and ``torch.export`` trace the operators.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "laplace_scan",
    "laplace_linear_attention",
    "laplace_transform",
    "gumbel_node_gate",
    "laplacian_kernel",
    "newton_schulz_inverse",
    "laplacian_attention",
    "nystrom_attention",
]


def laplace_scan(
    u: Tensor,
    decay: Tensor,
    freq: Tensor,
    c_fwd: Tensor,
    c_bwd: Optional[Tensor] = None,
    gate: Optional[Tensor] = None,
    state_fwd: Optional[Tensor] = None,
    state_bwd: Optional[Tensor] = None,
    cu_seqlens: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Fused bilateral Laplace scan with readout (the STLT core), O(N·S) time.

    For every batch b, head h, channel d and node k, with pole
    :math:`a_k = e^{-\mathrm{decay}_k} e^{-i\,\mathrm{freq}_k}`::

        F_n = a_k F_{n-1} + u_n        (causal,      F_{-1} = state_fwd)
        G_n = a_k G_{n+1} + u_n        (anticausal,  G_N    = state_bwd)
        y_n = sum_k gate_k [Re(c_fwd_k F_n) + Re(c_bwd_k (G_n - u_n))]

    The anticausal term is present iff ``c_bwd`` is given.

    Args:
        u: input ``[B, N, H, D]``, float32/float64/bfloat16/float16.
        decay, freq: ``[H, S]``, ``decay >= 0``.
        c_fwd, c_bwd: readout coefficients ``[H, S, D, 2]`` as (re, im).
        gate: ``[B, H, S]`` node gates; a node whose gate is exactly 0 is switched
            off (no cost, no contribution, its state passes through unchanged).
        state_fwd, state_bwd: initial states ``[B, H, S, D, 2]`` (zeros if None).
        cu_seqlens: packed variable-length batch: int32 offsets ``[n + 1]`` into N
            (``0, len_0, len_0 + len_1, ..., N``) of ``n`` sequences stored back to
            back in ``u [1, N, H, D]``. Both recurrences restart at every boundary,
            so no token sees another sequence; ``gate``, the states and the
            returned states are then per sequence, ``[n, ...]``.

    Returns:
        ``(y, final_fwd, first_bwd)``: ``y`` like ``u``; ``final_fwd`` is F after
        the last token and ``first_bwd`` is G at the first token (zeros for a
        causal scan), so a sequence can be processed in chunks. All outputs are
        differentiable with respect to every tensor input.
    """
    return torch.ops.laplace_attn.laplace_scan(
        u, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, cu_seqlens
    )


def laplace_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    decay: Tensor,
    freq: Tensor,
    c_fwd: Tensor,
    c_bwd: Optional[Tensor] = None,
    gate: Optional[Tensor] = None,
    state_fwd: Optional[Tensor] = None,
    state_bwd: Optional[Tensor] = None,
    return_states: bool = True,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Linear attention under learnable Laplace decays: an associative (key-value)
    state per node, O(N·S·Dk·Dv) time, O(N·D + S·Dk·Dv) memory.

    For every batch b, head h and node k, with pole
    :math:`a_k = e^{-\mathrm{decay}_k} e^{-i\,\mathrm{freq}_k}` and complex
    ``[Dk, Dv]`` states::

        F_k(t) = a_k F_k(t-1) + k_t v_t^T      (causal,      F_k(-1) = state_fwd)
        G_k(t) = a_k G_k(t+1) + k_t v_t^T      (anticausal,  G_k(N)  = state_bwd)
        y_t = sum_k gate_k [Re(c_fwd_k q_t^T F_k(t)) + Re(c_bwd_k a_k q_t^T G_k(t+1))]

    that is ``y_t = sum_s (q_t · k_s) K(t - s) v_s`` with the real, learnable lag
    kernel ``K(τ) = Re Σ_k gate_k c_fwd_k a_k^τ`` for τ ≥ 0 and
    ``Re Σ_k gate_k c_bwd_k a_k^{-τ}`` for τ < 0 (the anticausal term is present iff
    ``c_bwd`` is given). Computed in chunks of 64 tokens: a masked GEMM inside a chunk,
    one state pass across chunks; the backward recomputes the states.

    Args:
        q, k: ``[B, N, H, Dk]``; v: ``[B, N, H, Dv]``; float32/float64/bfloat16/float16.
        decay, freq: ``[H, S]``, ``decay >= 0``.
        c_fwd, c_bwd: per-node readout weights ``[H, S, 2]`` as (re, im).
        gate: ``[B, H, S]`` node gates (ones if None).
        state_fwd, state_bwd: initial states ``[B, H, S, Dk, Dv, 2]`` (zeros if None).
        return_states: False skips forming the final states (they are returned empty):
            a state holds S·Dk·Dv complex numbers per head, more than a short
            training sequence itself.

    Returns:
        ``(y, final_fwd, first_bwd)``: ``y`` ``[B, N, H, Dv]`` in the dtype of ``q``;
        ``final_fwd`` is F after the last token and ``first_bwd`` G at the first token
        (zeros without ``c_bwd``), in float32 (float64 for float64 inputs), so a
        sequence can be processed in pieces or decoded token by token exactly. All
        outputs are differentiable with respect to every tensor input.
    """
    return torch.ops.laplace_attn.laplace_linear_attention(
        q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd, return_states
    )


def laplace_transform(
    u: Tensor,
    decay: Tensor,
    freq: Tensor,
    bilateral: bool = True,
    state_fwd: Optional[Tensor] = None,
    state_bwd: Optional[Tensor] = None,
) -> Tensor:
    r"""Materialised STLT coefficients: for ``u [B, N, H, P]`` returns
    ``[B, N, H, S, P, 2]``, the complex :math:`F_n` (causal) or
    :math:`F_n + G_n - u_n` (bilateral) of every node, as (re, im).

    The same recurrences as :func:`laplace_scan` (it is computed by it), but the
    output has N·S entries per channel: meant for short sequences, the relevance
    mode of :class:`~laplace_attn.STLTAttention` and for plotting.
    ``state_fwd``/``state_bwd`` are ``[B, H, S, P, 2]``.
    """
    return torch.ops.laplace_attn.laplace_transform(u, decay, freq, bilateral, state_fwd, state_bwd)


def gumbel_node_gate(
    logits: Tensor, noise: Optional[Tensor], tau: float, hard: bool, training: bool
) -> Tensor:
    r"""Binary Concrete node gates in [0, 1] from importance logits ``[..., S]``.

    Training: ``sigmoid((logits + log U - log(1 - U)) / tau)`` with ``U = noise``
    drawn by the caller from Uniform(0, 1) (e.g. ``torch.rand_like(logits)``), so the
    op itself is deterministic and traceable; ``noise=None`` means no noise. Eval
    (``training=False``): ``sigmoid(logits / tau)``. ``hard=True`` returns
    ``1[z > 0]`` forward with the soft gradient backward (straight through), so
    :func:`laplace_scan` can skip the nodes it switches off.
    """
    return torch.ops.laplace_attn.gumbel_node_gate(logits, noise, tau, hard, training)


def laplacian_kernel(x1: Tensor, x2: Tensor, inv_lambda: Tensor) -> Tensor:
    r"""The L1 Laplacian kernel :math:`K_{ij} = \exp(-\lambda^{-1} \lVert x1_i - x2_j \rVert_1)`.

    ``x1 [B, H, N, D]``, ``x2 [B, H, M, D]``, ``inv_lambda`` a scalar (0-D) or ``[H]``
    tensor, ``>= 0``; returns ``[B, H, N, M]``. Differentiable in all three; the
    ``[N, M, D]`` difference tensor is never formed, forward or backward.
    """
    return torch.ops.laplace_attn.laplacian_kernel(x1, x2, inv_lambda)


def newton_schulz_inverse(A: Tensor, iters: int = 6, order: int = 3, ridge: float = 0.0) -> Tensor:
    r"""Z ≈ A⁻¹ for ``A [..., m, m]`` by Newton–Schulz iteration, no SVD or pinv.

    ``order=2``: Z ← 2Z − ZAZ; ``order=3``: Z ← ¼Z(13I − AZ(15I − AZ(7I − AZ))) (as in
    Nyströmformer). Each matrix starts from Z₀ = Aᵀ/(‖A‖₁‖A‖∞), so every singular
    value of AZ₀ lies in (0, 1]; ``ridge`` adds ridge·I to A first. For nearly singular
    A a few iterations approximate the pseudo-inverse (directions with tiny singular
    values stay near zero; many iterations amplify them, which a ridge prevents). The
    gradient is that of the inverse, dA = −Zᵀ·G·Zᵀ, not of the unrolled iterations.
    """
    return torch.ops.laplace_attn.newton_schulz_inverse(A, iters, order, ridge)


def laplacian_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    inv_lambda: Tensor,
    key_padding_mask: Optional[Tensor] = None,
    causal: bool = False,
    cu_seqlens: Optional[Tensor] = None,
    cu_seqlens_k: Optional[Tensor] = None,
) -> Tensor:
    r"""Exact attention with the L1 Laplacian kernel, in O(N) memory:
    :math:`o_i = \sum_j \kappa_{ij} v_j / \sum_j \kappa_{ij}`,
    :math:`\kappa_{ij} = \exp(-\lambda^{-1}\lVert q_i - k_j\rVert_1)`.

    ``q [B, H, N, D]``, ``k [B, H, M, D]``, ``v [B, H, M, E]``, ``inv_lambda`` a
    scalar or ``[H]`` (finite, >= 0); ``key_padding_mask`` ``[B, M]``: bool (True =
    padded) or float, added to the logits like nn.MultiheadAttention's float masks
    (-inf = padded; a constant, it gets no gradient); ``causal`` keeps keys
    ``j <= i + M - N`` (the queries are the last N positions, as in decoding;
    ``j <= i`` when ``N == M``). Each row is rescaled by its maximum logit, so rows far from every key
    do not underflow to 0/0; a row with no visible key returns zeros.

    Packed variable-length batches: ``cu_seqlens`` (int32 offsets ``[n + 1]`` into
    N) describes ``n`` sequences stored back to back in ``q, k, v [1, H, N, ·]``;
    each query sees only the keys of its own sequence (and with ``causal``, only
    the earlier ones). ``cu_seqlens_k`` gives the keys' offsets when they differ
    from the queries' (alignment then bottom-right per sequence);
    ``key_padding_mask`` is then ``[1, M]`` over the packed keys.
    """
    return torch.ops.laplace_attn.laplacian_attention(q, k, v, inv_lambda, key_padding_mask,
                                                      causal, cu_seqlens, cu_seqlens_k)


def nystrom_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_landmarks: int,
    kernel: str = "laplacian",
    inv_lambda: Optional[Tensor] = None,
    normalization: str = "row",
    iters: int = 6,
    key_padding_mask: Optional[Tensor] = None,
    cu_seqlens: Optional[Tensor] = None,
) -> Tensor:
    r"""Linear-time Nyström attention from ``num_landmarks`` landmarks:
    ``Norm(C_q) · NS⁻¹(Norm(W)) · (Norm(C_k) · V)``.

    Landmarks are the means of ``num_landmarks`` contiguous segments of the tokens
    (any N; padded tokens excluded; an all-padding segment drops out). ``kernel`` is
    ``"laplacian"`` (needs ``inv_lambda``) or ``"softmax"`` (with ``"row"``
    normalisation this is Nyströmformer); ``normalization`` is ``"row"`` or
    ``"injective"`` ((G − rowmean)/sqrt(rowvar + ε) + 1/M). The inverse is
    :func:`newton_schulz_inverse` with ``iters`` steps. With ``num_landmarks >= N``
    and row normalisation the result is the exact attention. Self-attention only:
    ``q, k [B, H, N, D]``, ``v [B, H, N, E]``.

    ``cu_seqlens`` (int32 offsets ``[n + 1]``, ``"row"`` normalisation, no
    ``key_padding_mask``): ``n`` sequences packed in ``[1, H, N, ·]``, each with its
    own ``num_landmarks`` segments, seeing only itself. A sequence shorter than
    ``num_landmarks`` has one landmark per token (Nyström, not the exact shortcut).
    """
    return torch.ops.laplace_attn.nystrom_attention(q, k, v, num_landmarks, kernel, inv_lambda,
                                                    normalization, iters, key_padding_mask,
                                                    cu_seqlens)


def _state_shape(u: Tensor, decay: Tensor, cu_seqlens: Optional[Tensor] = None):
    batch = u.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1
    return (batch, u.shape[2], decay.shape[1], u.shape[3], 2)


def _check_cu_seqlens(op: str, name: str, cu_seqlens: Optional[Tensor], packed_name: str,
                      packed: Tensor) -> None:
    """The shape checks of packed offsets that need no values."""
    if cu_seqlens is None:
        return
    torch._check(cu_seqlens.dtype == torch.int32, lambda: (
        f"{op}: expected {name} of dtype int32 (offsets of the packed sequences), but got "
        f"{cu_seqlens.dtype}"))
    torch._check(cu_seqlens.dim() == 1 and cu_seqlens.shape[0] >= 1, lambda: (
        f"{op}: expected {name} of shape [num_sequences + 1] (1-D, at least one entry)"))
    torch._check(packed.shape[0] == 1, lambda: (
        f"{op}: with {name} the sequences are packed into one row; expected {packed_name} "
        f"with batch size 1"))


def _check_like_u(op: str, u: Tensor, **tensors) -> None:
    """Checks that every given tensor has the device and dtype of ``u``."""
    # Mixed devices reach the fake kernel (a meta tensor dispatches here), so it
    # repeats the native kernels' device and dtype checks.
    for name, t in tensors.items():
        if t is None:
            continue
        torch._check(t.device == u.device, lambda: (
            f"{op}: expected {name} on {u.device} (the device of u), but got {t.device}"))
        torch._check(t.dtype == u.dtype, lambda: (
            f"{op}: expected {name} of dtype {u.dtype} (the dtype of u), but got {t.dtype}"))


_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _check_params(op: str, activation: Tensor, **tensors) -> None:
    """The precision policy: parameters and states in the activation's dtype or,
    next to bfloat16/float16 activations, in float32."""
    for name, t in tensors.items():
        if t is None:
            continue
        torch._check(t.device == activation.device, lambda: (
            f"{op}: expected {name} on {activation.device}, but got {t.device}"))
        allowed = (activation.dtype, torch.float32) if activation.dtype in _LOW_PRECISION \
            else (activation.dtype,)
        torch._check(t.dtype in allowed, lambda: (
            f"{op}: expected {name} of dtype {' or '.join(map(str, allowed))}, but got "
            f"{t.dtype}"))


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@torch.library.register_fake("laplace_attn::laplace_scan")
def _laplace_scan_fake(u, decay, freq, c_fwd, c_bwd=None, gate=None, state_fwd=None, state_bwd=None,
                       cu_seqlens=None):
    torch._check(u.dim() == 4, lambda: "laplace_scan: expected u of shape [B, N, H, D] (4-D)")
    torch._check(decay.dim() == 2, lambda: "laplace_scan: expected decay of shape [H, S] (2-D)")
    _check_params("laplace_scan", u, decay=decay, freq=freq, c_fwd=c_fwd, c_bwd=c_bwd, gate=gate,
                  state_fwd=state_fwd, state_bwd=state_bwd)
    _check_cu_seqlens("laplace_scan", "cu_seqlens", cu_seqlens, "u", u)
    shape = _state_shape(u, decay, cu_seqlens)
    # States come back in the compute dtype (float32 next to bfloat16/float16 u).
    state_dtype = _compute_dtype(u)
    return (u.new_empty(u.shape), u.new_empty(shape, dtype=state_dtype),
            u.new_empty(shape, dtype=state_dtype))


@torch.library.register_fake("laplace_attn::_laplace_scan_backward")
def _laplace_scan_backward_fake(
    grad_y, grad_final_fwd, grad_first_bwd, u, decay, freq, c_fwd, c_bwd, gate,
    state_fwd, state_bwd, cu_seqlens, output_mask,
):
    def grad_like(want, t):
        return t.new_empty(t.shape) if want and t is not None else u.new_empty((0,))

    return (
        grad_like(output_mask[0], u),
        grad_like(output_mask[1], decay),
        grad_like(output_mask[2], freq),
        grad_like(output_mask[3], c_fwd),
        grad_like(output_mask[4], c_bwd),
        grad_like(output_mask[5], gate),
        grad_like(output_mask[6], state_fwd),
        grad_like(output_mask[7], state_bwd),
    )


@torch.library.register_fake("laplace_attn::laplace_linear_attention")
def _laplace_linear_attention_fake(q, k, v, decay, freq, c_fwd, c_bwd=None, gate=None,
                                   state_fwd=None, state_bwd=None, return_states=True):
    op = "laplace_linear_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        torch._check(t.dim() == 4, lambda: f"{op}: expected {name} of shape [B, N, H, D] (4-D)")
    torch._check(decay.dim() == 2, lambda: f"{op}: expected decay of shape [H, S] (2-D)")
    _check_like_u(op, q, k=k, v=v)
    _check_params(op, q, decay=decay, freq=freq, c_fwd=c_fwd, c_bwd=c_bwd, gate=gate,
                  state_fwd=state_fwd, state_bwd=state_bwd)
    shape = (q.shape[0], q.shape[2], decay.shape[1], q.shape[3], v.shape[3], 2)
    if not return_states:
        shape = (0,)
    state_dtype = _compute_dtype(q)
    return (v.new_empty(v.shape, dtype=q.dtype), q.new_empty(shape, dtype=state_dtype),
            q.new_empty(shape, dtype=state_dtype))


@torch.library.register_fake("laplace_attn::_laplace_linear_attention_backward")
def _laplace_linear_attention_backward_fake(
    grad_y, grad_final_fwd, grad_first_bwd, q, k, v, decay, freq, c_fwd, c_bwd, gate,
    state_fwd, state_bwd, output_mask,
):
    inputs = (q, k, v, decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd)
    return tuple(t.new_empty(t.shape) if want and t is not None else q.new_empty((0,))
                 for want, t in zip(output_mask, inputs))


@torch.library.register_fake("laplace_attn::gumbel_node_gate")
def _gumbel_node_gate_fake(logits, noise, tau, hard, training):
    _check_like_u("gumbel_node_gate", logits, noise=noise)
    return logits.new_empty(logits.shape)


@torch.library.register_fake("laplace_attn::_gumbel_node_gate_backward")
def _gumbel_node_gate_backward_fake(grad, logits, noise, tau, training):
    return logits.new_empty(logits.shape)


@torch.library.register_fake("laplace_attn::laplacian_kernel")
def _laplacian_kernel_fake(x1, x2, inv_lambda):
    torch._check(x1.dim() == 4 and x2.dim() == 4,
                 lambda: "laplacian_kernel: expected x1 [B, H, N, D] and x2 [B, H, M, D]")
    _check_like_u("laplacian_kernel", x1, x2=x2)
    _check_params("laplacian_kernel", x1, inv_lambda=inv_lambda)
    return x1.new_empty((x1.shape[0], x1.shape[1], x1.shape[2], x2.shape[2]))


@torch.library.register_fake("laplace_attn::_laplacian_kernel_backward")
def _laplacian_kernel_backward_fake(grad, x1, x2, inv_lambda, kernel, output_mask):
    def grad_like(want, t):
        return t.new_empty(t.shape) if want else x1.new_empty((0,))

    return grad_like(output_mask[0], x1), grad_like(output_mask[1], x2), grad_like(
        output_mask[2], inv_lambda)


@torch.library.register_fake("laplace_attn::_laplacian_attention_forward")
def _laplacian_attention_forward_fake(q, k, v, inv_lambda, key_padding_mask, causal,
                                      cu_seqlens, cu_seqlens_k):
    _check_like_u("laplacian_attention", q, k=k, v=v)
    _check_params("laplacian_attention", q, inv_lambda=inv_lambda)
    _check_cu_seqlens("laplacian_attention", "cu_seqlens", cu_seqlens, "q", q)
    _check_cu_seqlens("laplacian_attention", "cu_seqlens_k", cu_seqlens_k, "k", k)
    B, H, N = q.shape[0], q.shape[1], q.shape[2]
    return (q.new_empty((B, H, N, v.shape[3])),
            q.new_empty((B, H, N), dtype=_compute_dtype(q)))


@torch.library.register_fake("laplace_attn::_laplacian_attention_backward")
def _laplacian_attention_backward_fake(grad_out, q, k, v, inv_lambda, key_padding_mask, causal,
                                       cu_seqlens, cu_seqlens_k, out, lse, output_mask):
    return tuple(t.new_empty(t.shape) if want else q.new_empty((0,))
                 for want, t in zip(output_mask, (q, k, v, inv_lambda)))
