"""Packed variable-length batches: sequences of different lengths stored back to back
in one row (batch size 1), described by ``cu_seqlens``, int32 offsets ``[n + 1]`` from 0
to the total length (the PyTorch / flash-attn convention). Every operator and module
of this package that takes ``cu_seqlens`` keeps the sequences apart."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def pack_sequences(sequences: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """Packs ``[N_i, ...]`` tensors into ``([1, sum N_i, ...], cu_seqlens)``."""
    if len(sequences) == 0:
        raise ValueError("pack_sequences: expected at least one sequence")
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.int64)
    return torch.cat(sequences, 0)[None], cu_seqlens_from_lengths(lengths,
                                                                  sequences[0].device)


def unpack_sequences(packed: Tensor, cu_seqlens: Tensor) -> List[Tensor]:
    """The inverse of :func:`pack_sequences`: ``[1, T, ...]`` -> ``[N_i, ...]`` views."""
    bounds = cu_seqlens.tolist()
    return [packed[0, a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def cu_seqlens_from_lengths(lengths: Tensor, device: Optional[torch.device] = None) -> Tensor:
    """Offsets ``[0, l_0, l_0 + l_1, ...]`` as int32."""
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    zero = torch.zeros(1, dtype=torch.int64)
    return torch.cat([zero, lengths.cumsum(0)]).to(torch.int32).to(device or lengths.device)


def cu_seqlens_from_position_ids(position_ids: Tensor) -> Tensor:
    """Offsets of packed sequences whose position ids restart at every sequence (what
    packing data collators produce, ``[1, T]``)."""
    ids = position_ids.reshape(-1)
    starts = (ids == ids.min()).nonzero().reshape(-1)
    end = torch.tensor([ids.numel()], dtype=starts.dtype, device=ids.device)
    return torch.cat([starts, end]).to(torch.int32)


def sequence_ids(cu_seqlens: Tensor, total: int) -> Tensor:
    """The sequence of every packed position, ``[total]`` int64."""
    ends = cu_seqlens[1:].to(torch.int64)
    return torch.searchsorted(ends, torch.arange(total, device=ends.device), right=True)


def sequence_means(x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """The mean of ``x [1, T, E]`` over each sequence: ``[n, E]`` (0 for an empty one)."""
    n = cu_seqlens.shape[0] - 1
    ids = sequence_ids(cu_seqlens, x.shape[1])
    sums = x.new_zeros(n, x.shape[2]).index_add(0, ids, x[0])
    counts = x.new_zeros(n).index_add(0, ids, x.new_ones(x.shape[1]))
    return sums / counts.clamp_min(1.0)[:, None]
