"""Context parallelism: one sequence split along N across the ranks of a
``torch.distributed`` process group (gloo on CPUs, NCCL on GPUs), each rank holding a
contiguous slice, ranks in order.

The scan needs no activations from other ranks: each rank scans its slice from zero
states, the ranks exchange their final states (one all-gather of ``[B, H, S, D, 2]``
per direction), each composes the state entering its slice in closed form,
F_in(r) = sum_{j<r} a^(L_{j+1} + ... + L_{r-1}) F_j (a^L the pole to the power of a slice
length), and adds that state's contribution, Re(c a^(n+1) F_in), to its outputs.
Communication is O(ranks * B * H * S * D) per call, whatever N; the backward exchanges
the state gradients the same way.
"""
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .ops import laplace_scan

__all__ = ["context_parallel_scan"]


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


def _slice_lengths(length: int, device: torch.device, group) -> List[int]:
    mine = torch.tensor([length], dtype=torch.int64, device=device)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, mine, group=group)
    return [int(p) for p in parts]


def _complex(pairs: Tensor) -> Tensor:
    return torch.complex(pairs[..., 0], pairs[..., 1])


def _pairs(z: Tensor) -> Tensor:
    return torch.stack([z.real, z.imag], -1)


def _state_contribution(powers: Tensor, weights: Tensor) -> Tensor:
    """Re(sum_k powers[h, k, n] * weights[b, h, k, d]) as [B, N, H, D]."""
    return (torch.einsum("hkn,bhkd->bnhd", powers.real, weights.real)
            - torch.einsum("hkn,bhkd->bnhd", powers.imag, weights.imag))


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
    lengths = _slice_lengths(u_local.shape[1], u_local.device, group)
    y, final_local, first_local = laplace_scan(u_local, decay, freq, c_fwd, c_bwd, gate)
    # A node whose gate is exactly 0 passes its state through unchanged, so the scan
    # returns no state of its own for it; yet its (straight-through) gate gradient is
    # that of its contribution as if it were on. One more scan, without gates, gives
    # those nodes' states as if on.
    passes = (gate == 0)[..., None] if gate is not None else None
    if passes is not None and bool(passes.any()):
        _, final_local, first_local = laplace_scan(u_local, decay, freq, c_fwd, c_bwd)
    compute = final_local.dtype  # float32, or float64 for float64 u
    log_pole = torch.complex(-decay.to(compute), -freq.to(compute))  # [H, S]
    gate_c = (gate.to(compute) if gate is not None
              else torch.ones(u_local.shape[0], *decay.shape, dtype=compute,
                              device=u_local.device))[..., None]
    steps = torch.arange(u_local.shape[1], dtype=compute, device=u_local.device)

    # One exchange for both directions: two collectives could run in a different order
    # on different ranks in the backward, and pair up wrongly.
    local = final_local if c_bwd is None else torch.stack([final_local, first_local])
    summaries = _complex(_GatherAcrossRanks.apply(local, group))  # [R, (2,) B, H, S, D]
    if c_bwd is None:
        summaries = summaries[:, None]

    def compose(direction: int, initial: Optional[Tensor], order: List[int]):
        """The state entering this rank's slice and the one leaving the sequence, from
        every rank's local state: s <- a^L_j s + local_j along `order`."""
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
        return entering, _pairs(state)

    def add_contribution(y: Tensor, exponents: Tensor, c: Tensor, entering: Tensor) -> Tensor:
        powers = torch.exp(exponents[None, None, :] * log_pole[..., None])  # [H, S, L]
        weights = gate_c * _complex(c.to(compute))[None] * entering
        return y + _state_contribution(powers, weights).to(y.dtype)

    entering, final_fwd = compose(0, state_fwd, list(range(world)))
    y = add_contribution(y, steps + 1, c_fwd, entering)  # Re(c a^(n+1) F_in)
    first_bwd = torch.zeros_like(final_fwd)
    if c_bwd is not None:
        entering, first_bwd = compose(1, state_bwd, list(reversed(range(world))))
        y = add_contribution(y, u_local.shape[1] - steps, c_bwd, entering)  # Re(c a^(L-n) G_in)
    return y, final_fwd, first_bwd
