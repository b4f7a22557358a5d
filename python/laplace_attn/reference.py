"""Plain-PyTorch implementations of the laplace_attn operators.

They compute the same math by other algorithms, for checking results and as
benchmark baselines; they are slower and use more memory than the fused ops.
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ["laplace_kernel", "laplace_scan_fft"]


def laplace_kernel(decay: Tensor, freq: Tensor, c: Tensor, length: int, start: int = 0) -> Tensor:
    r"""The impulse response :math:`K(t) = \sum_k \mathrm{Re}(c_k a_k^t)` for
    ``t = start, ..., start + length - 1``, as ``[H, D, length]``.

    ``a^t`` is formed as ``exp(t log a)``, not by a recurrence.
    """
    t = torch.arange(start, start + length, device=decay.device, dtype=decay.dtype)
    log_a = torch.complex(-decay, -freq)  # [H, S]
    powers = torch.exp(t * log_a[..., None])  # [H, S, T]
    coef = torch.complex(c[..., 0], c[..., 1])  # [H, S, D]
    return torch.einsum("hsd,hst->hdt", coef, powers).real


def laplace_scan_fft(
    u: Tensor,
    decay: Tensor,
    freq: Tensor,
    c_fwd: Tensor,
    c_bwd: Optional[Tensor] = None,
    gate: Optional[Tensor] = None,
) -> Tensor:
    """``y`` of :func:`laplace_attn.laplace_scan` (zero initial states) as one long
    convolution ``y = K * u`` computed with the FFT: O(N log N) time, and the
    kernel ``K`` materialised for every lag, per batch element when gated."""
    B, N, H, D = u.shape
    if gate is None:
        gate = torch.ones(B, H, decay.shape[1], dtype=u.dtype, device=u.device)
    # Gates scale the readout per batch element: fold them into c.
    c_fwd_b = gate[..., None, None] * c_fwd  # [B, H, S, D, 2]
    kernels = torch.stack([laplace_kernel(decay, freq, c, N) for c in c_fwd_b])  # [B, H, D, N]
    size = 2 * N
    x = u.permute(0, 2, 3, 1)  # [B, H, D, N]
    x_f = torch.fft.rfft(x, n=size)
    y = torch.fft.irfft(x_f * torch.fft.rfft(kernels, n=size), n=size)[..., :N]
    if c_bwd is not None:
        # Anticausal part: y_n += sum_{t>=1} K-(t) u_{n+t}, a convolution of the
        # reversed sequence with K- shifted by one step.
        c_bwd_b = gate[..., None, None] * c_bwd
        anti = torch.stack([laplace_kernel(decay, freq, c, N, start=1) for c in c_bwd_b])
        anti = torch.nn.functional.pad(anti, (1, 0))[..., :N]  # K-(0) = 0
        y_rev = torch.fft.irfft(torch.fft.rfft(x.flip(-1), n=size) * torch.fft.rfft(anti, n=size),
                                n=size)[..., :N]
        y = y + y_rev.flip(-1)
    return y.permute(0, 3, 1, 2)
