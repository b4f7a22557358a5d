"""Context parallelism: one sequence split along N across the ranks of a
``torch.distributed`` process group (gloo on CPUs, NCCL on GPUs), each rank holding a
contiguous slice, ranks in order.

The scan needs no activations from other ranks: each rank computes the states its
slice leaves from zero (a matrix product with pole powers), the ranks exchange them
(one all-gather of ``[B, H, S, D, 2]`` per direction), each composes the state entering
its slice in closed form, F_in(r) = sum_{j<r} a^(L_{j+1} + ... + L_{r-1}) F_j (a^L the
pole to the power of a slice length), and scans its slice from that state.
Communication is O(ranks * B * H * S * D) per call, whatever N; the backward exchanges
the state gradients the same way.
"""
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .ops import laplace_scan

__all__ = ["context_parallel_scan", "context_parallel_laplacian_attention"]


class _GatherAcrossRanks(torch.autograd.Function):
    """all_gather of one tensor per rank into ``[R, ...]``, differentiable: the
    gradient of rank j's tensor is the sum over ranks of the gradient of entry j."""

    @staticmethod
    def forward(ctx, tensor: Tensor, group) -> Tensor:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank], None


def _slice_lengths(op: str, local: Tensor, length_dim: int, shape: List[int], group) -> List[int]:
    """Every rank's slice length, and a check that the ranks agree on everything else
    (`shape`): one collective, so every rank raises together rather than some waiting
    forever in the next one."""
    mine = torch.tensor([local.shape[length_dim], *shape], dtype=torch.int64,
                        device=local.device)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, mine, group=group)
    rows = [p.tolist() for p in parts]
    for r, row in enumerate(rows):
        if row[1:] != rows[0][1:]:
            raise RuntimeError(f"{op}: the ranks disagree on the shapes of the call: rank 0 "
                               f"has {rows[0][1:]} and rank {r} has {row[1:]} (every shape "
                               f"but the slice length must be the same on every rank)")
    return [row[0] for row in rows]


def _complex(pairs: Tensor) -> Tensor:
    return torch.complex(pairs[..., 0], pairs[..., 1])


def _pairs(z: Tensor) -> Tensor:
    return torch.stack([z.real, z.imag], -1)


# A slice's states from zero, F = sum_m a^(L-1-m) u_m and G = sum_m a^m u_m, as matrix
# products over blocks of T tokens, m = T j + t: a^(L-1-m) = a^(T (J-1-j)) a^(T-1-t) once the
# slice is padded at the front to J T tokens (at the back for G), so every exponent is >= 0.
_POWER_BLOCK = 256


def _slice_state(u: Tensor, log_pole: Tensor, from_the_end: bool) -> Tensor:
    """[B, H, S, D] complex: F (from_the_end) or G of the slice u [B, L, H, D]."""
    B, L, H, D = u.shape
    S = log_pole.shape[1]
    block = max(1, min(_POWER_BLOCK, L))
    blocks = -(-L // block)
    pad = blocks * block - L
    if pad:
        u = F.pad(u, (0, 0, 0, 0, pad, 0) if from_the_end else (0, 0, 0, 0, 0, pad))
    x = u.view(B, blocks, block, H, D)
    t = torch.arange(block, dtype=log_pole.real.dtype, device=u.device)
    j = torch.arange(blocks, dtype=t.dtype, device=u.device)
    if from_the_end:
        t, j = block - 1 - t, blocks - 1 - j
    within = torch.exp(t * log_pole[..., None])  # [H, S, T]
    across = torch.exp(j * block * log_pole[..., None])  # [H, S, J]
    p = torch.cat([within.real, within.imag], 1)  # [H, 2S, T]
    # Head by head: each head's rows are read in place (strided), not transposed first.
    parts = torch.stack([torch.matmul(p[h], x[:, :, :, h]) for h in range(H)], 1)
    parts = torch.complex(parts[..., :S, :], parts[..., S:, :])  # [B, H, J, S, D]
    return (parts * across.transpose(1, 2)[None, ..., None]).sum(2)


def context_parallel_scan(
    u_local: Tensor,
    decay: Tensor,
    freq: Tensor,
    c_fwd: Tensor,
    c_bwd: Optional[Tensor] = None,
    gate: Optional[Tensor] = None,
    state_fwd: Optional[Tensor] = None,
    state_bwd: Optional[Tensor] = None,
    group: Optional[dist.ProcessGroup] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r""":func:`laplace_attn.laplace_scan` over a sequence split across the ranks of
    ``group`` (default: the world): ``u_local [B, L_r, H, D]`` is rank r's slice, slices
    in rank order, of any lengths (0 included). Every other argument is as for
    ``laplace_scan`` and the same on every rank (``state_fwd`` enters before rank 0's
    slice, ``state_bwd`` after the last rank's).

    Returns ``(y_local, final_fwd, first_bwd)``: this rank's outputs, equal to that slice
    of the single-process result, and the states of the whole sequence (the same on
    every rank). Differentiable with respect to every tensor input; as with DDP, every
    rank must run the backward. Parameter gradients are this rank's share: sum them over
    the ranks (DDP does) for the single-process gradient.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("context_parallel_scan: torch.distributed is not initialised; "
                           "call torch.distributed.init_process_group first (torchrun does)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    # The operator's own checks on this rank's arguments first (on no tokens: free).
    laplace_scan(u_local[:, :0], decay, freq, c_fwd, c_bwd, gate, state_fwd, state_bwd)
    lengths = _slice_lengths("context_parallel_scan", u_local, 1,
                             [u_local.shape[0], *u_local.shape[2:], decay.shape[1],
                              c_bwd is not None, gate is not None, state_fwd is not None,
                              state_bwd is not None], group)
    compute = torch.float64 if u_local.dtype == torch.float64 else torch.float32
    log_pole = torch.complex(-decay.to(compute), -freq.to(compute))  # [H, S]
    u = u_local.to(compute)
    # The states this slice leaves, as if every node were on: a node whose gate is
    # exactly 0 passes its state through, but its straight-through gate gradient is
    # that of its contribution had it been on.
    local = [_slice_state(u, log_pole, True)]
    if c_bwd is not None:
        local.append(_slice_state(u, log_pole, False))
    # One exchange for both directions: two collectives could run in a different order
    # on different ranks in the backward, and pair up wrongly.
    summaries = _complex(_GatherAcrossRanks.apply(_pairs(torch.stack(local)), group))
    passes = (gate == 0)[..., None] if gate is not None else None

    def compose(direction: int, initial: Optional[Tensor], order: List[int]):
        """The state entering this rank's slice and the one leaving the sequence, from
        every rank's slice state: s <- a^L_j s + state_j along `order`."""
        start = (torch.zeros_like(summaries[0, direction]) if initial is None
                 else _complex(initial.to(compute)))
        state, entering = start, start
        for j in order:
            if j == rank:
                entering = state
            state = (torch.exp(lengths[j] * log_pole)[None, :, :, None] * state
                     + summaries[j, direction])
        if passes is not None:
            state = torch.where(passes, start, state)
        return _pairs(entering), _pairs(state)

    entering_fwd, final_fwd = compose(0, state_fwd, list(range(world)))
    entering_bwd, first_bwd = None, torch.zeros_like(final_fwd)
    if c_bwd is not None:
        entering_bwd, first_bwd = compose(1, state_bwd, list(reversed(range(world))))
    # The slice's own scan, from the states that enter it.
    y, _, _ = laplace_scan(u_local, decay, freq, c_fwd, c_bwd, gate, entering_fwd, entering_bwd)
    return y, final_fwd, first_bwd


# --- exact Laplacian attention ---------------------------------------------------------


def _block_of(t: Tensor, owner: int, lengths: List[int], group) -> Tensor:
    """Rank `owner`'s [B, H, L, D] block, sent to every rank (padded to the longest
    slice for the collective, trimmed after)."""
    longest = max(lengths)
    shape = (t.shape[0], t.shape[1], longest, t.shape[3])
    if dist.get_rank(group) == owner:
        block = t.new_zeros(shape)
        block[:, :, :t.shape[2]] = t
    else:
        block = t.new_empty(shape)
    dist.broadcast(block, dist.get_global_rank(group, owner) if group is not None else owner,
                   group=group)
    return block[:, :, :lengths[owner]]


class _ContextParallelAttention(torch.autograd.Function):
    """Each rank's queries against every rank's key-value block in turn (rank order), each
    block's partial result merged by its log-normaliser; the backward sends the blocks
    again, computes each block's gradients with the merged normaliser and output, and
    returns every rank's key and value gradients to it, summed in rank order."""

    @staticmethod
    def forward(ctx, q, k, v, inv_lambda, causal, lengths, group):
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        parts = []
        for j in range(world):
            k_j, v_j = _block_of(k, j, lengths, group), _block_of(v, j, lengths, group)
            if causal and j > rank:
                continue  # later tokens: nothing to see
            parts.append(torch.ops.laplace_attn._laplacian_attention_forward(
                q, k_j, v_j, inv_lambda, None, causal and j == rank, None, None))
        lses = torch.stack([lse for _, lse in parts])  # [blocks, B, H, N]
        lse = torch.logsumexp(lses, 0)
        share = torch.where(torch.isfinite(lse), torch.exp(lses - lse), torch.zeros_like(lses))
        out = sum(share[i][..., None] * o.to(share.dtype) for i, (o, _) in enumerate(parts))
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, inv_lambda, out, lse)
        ctx.causal, ctx.lengths, ctx.group = causal, lengths, group
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, inv_lambda, out, lse = ctx.saved_tensors
        group, lengths = ctx.group, ctx.lengths
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        longest = max(lengths)
        grad_out = grad_out.contiguous()
        grad_q = torch.zeros_like(q)
        grad_lambda = torch.zeros_like(inv_lambda)
        grad_k = grad_v = None
        for j in range(world):
            k_j, v_j = _block_of(k, j, lengths, group), _block_of(v, j, lengths, group)
            shape = (k.shape[0], k.shape[1], longest, k.shape[3])
            mine_k, mine_v = k.new_zeros(shape), v.new_zeros(shape[:3] + (v.shape[3],))
            if not (ctx.causal and j > rank):
                g_q, g_k, g_v, g_l = torch.ops.laplace_attn._laplacian_attention_backward(
                    grad_out, q, k_j, v_j, inv_lambda, None, ctx.causal and j == rank, None,
                    None, out, lse, [True] * 4)
                grad_q = grad_q + g_q
                grad_lambda = grad_lambda + g_l
                mine_k[:, :, :lengths[j]], mine_v[:, :, :lengths[j]] = g_k, g_v
            # Block j's key and value gradients from every rank, summed by its owner in
            # rank order (deterministic).
            for tensor, slot in ((mine_k, "k"), (mine_v, "v")):
                parts = ([torch.empty_like(tensor) for _ in range(world)] if rank == j
                         else None)
                dist.gather(tensor, parts, dst=dist.get_global_rank(group, j)
                            if group is not None else j, group=group)
                if rank == j:
                    total = parts[0]
                    for part in parts[1:]:
                        total = total + part
                    if slot == "k":
                        grad_k = total[:, :, :lengths[j]]
                    else:
                        grad_v = total[:, :, :lengths[j]]
        return grad_q, grad_k, grad_v, grad_lambda, None, None, None


def context_parallel_laplacian_attention(q_local: Tensor, k_local: Tensor, v_local: Tensor,
                                         inv_lambda: Tensor, causal: bool = False,
                                         group: Optional[dist.ProcessGroup] = None) -> Tensor:
    r"""Exact :func:`laplace_attn.laplacian_attention` (self-attention) over a sequence
    split across the ranks of ``group``: ``q_local, k_local [B, H, L_r, D]``,
    ``v_local [B, H, L_r, E]`` are rank r's slice (rank order, any lengths). Returns this
    rank's rows of the single-process result.

    The key-value blocks travel one at a time (each rank holds its own and one other),
    so memory per rank stays O(N / R + largest slice); each block's partial rows are
    merged by their log-normalisers, in rank order. The backward sends the blocks again
    and returns each block's key and value gradients to its rank. ``inv_lambda``'s
    gradient is this rank's share (sum over ranks, as DDP does).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("context_parallel_laplacian_attention: torch.distributed is not "
                           "initialised; call torch.distributed.init_process_group first "
                           "(torchrun does)")
    op = "context_parallel_laplacian_attention"
    if q_local.shape[2] != k_local.shape[2]:
        raise RuntimeError(f"{op}: self-attention: expected q and k slices of one length, got "
                           f"{q_local.shape[2]} and {k_local.shape[2]}")
    # The operator's own checks on this rank's arguments first (on no rows: free).
    torch.ops.laplace_attn.laplacian_attention(q_local[:, :, :0], k_local, v_local, inv_lambda,
                                               None, causal, None, None)
    lengths = _slice_lengths(op, k_local, 2, [q_local.shape[0], q_local.shape[1],
                                              q_local.shape[3], v_local.shape[3], causal],
                             group)
    return _ContextParallelAttention.apply(q_local, k_local, v_local, inv_lambda, causal,
                                           lengths, group)
