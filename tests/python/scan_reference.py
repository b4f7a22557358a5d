"""An independent float64 reference of laplace_scan.

It builds every state directly as a sum of powers a^t = exp(t * log a) times the
inputs (an O(N^2) matrix product per node), never by the recurrence the kernels
use. A node whose gate is exactly 0 is switched off: no contribution, and its
state passes through unchanged.
"""
import torch


def _complex(x):
    return torch.complex(x[..., 0], x[..., 1])


def _real_pair(z):
    return torch.stack([z.real, z.imag], dim=-1)


def reference_scan(u, decay, freq, c_fwd, c_bwd=None, gate=None, state_fwd=None, state_bwd=None):
    dt = torch.float64
    u = u.to(dt)
    B, N, H, D = u.shape
    S = decay.shape[1]
    log_a = torch.complex(-decay.to(dt), -freq.to(dt))  # [H, S]
    gate = torch.ones(B, H, S, dtype=dt) if gate is None else gate.to(dt)
    active = (gate != 0).to(dt)[..., None]  # [B, H, S, 1]
    n = torch.arange(N, dtype=dt)
    lag = n[:, None] - n[None, :]  # n - m
    uc = u.to(torch.complex128)

    def powers(t):  # a^t for a tensor of non-negative exponents t -> [H, S, *t.shape]
        return torch.exp(t.to(torch.complex128) * log_a.reshape(H, S, *([1] * t.dim())))

    # Causal states F[b, h, s, n, d] = sum_{m <= n} a^(n-m) u_m + a^(n+1) state_fwd.
    causal = powers(lag.clamp(min=0)) * (lag >= 0)
    F = torch.einsum("hsnm,bmhd->bhsnd", causal, uc)
    if state_fwd is not None:
        F = F + powers(n + 1)[None, :, :, :, None] * _complex(state_fwd.to(dt))[:, :, :, None, :]
    y = torch.einsum("bhs,hsd,bhsnd->bnhd", gate.to(torch.complex128), _complex(c_fwd.to(dt)), F).real
    init_f = _complex(state_fwd.to(dt)) if state_fwd is not None else torch.zeros(B, H, S, D, dtype=torch.complex128)
    last_f = F[:, :, :, -1, :] if N > 0 else init_f
    final_fwd = active * last_f + (1 - active) * init_f

    if c_bwd is None:
        return y, _real_pair(final_fwd), torch.zeros(B, H, S, D, 2, dtype=dt)

    # Strictly anticausal P[b, h, s, n, d] = sum_{m > n} a^(m-n) u_m + a^(N-n) state_bwd.
    anti = powers((-lag).clamp(min=0)) * (lag < 0)
    P = torch.einsum("hsnm,bmhd->bhsnd", anti, uc)
    if state_bwd is not None:
        P = P + powers(N - n)[None, :, :, :, None] * _complex(state_bwd.to(dt))[:, :, :, None, :]
    y = y + torch.einsum("bhs,hsd,bhsnd->bnhd", gate.to(torch.complex128), _complex(c_bwd.to(dt)), P).real
    init_b = _complex(state_bwd.to(dt)) if state_bwd is not None else torch.zeros(B, H, S, D, dtype=torch.complex128)
    first_g = P[:, :, :, 0, :] + uc[:, 0][:, :, None, :] if N > 0 else init_b
    first_bwd = active * first_g + (1 - active) * init_b
    return y, _real_pair(final_fwd), _real_pair(first_bwd)


def make_inputs(B=2, N=37, H=3, D=5, S=6, dtype=torch.float64, bilateral=True, gate=False,
                states=False, seed=0, decay_range=(0.02, 0.5), requires_grad=False):
    """Random, well-conditioned inputs for laplace_scan as a dict of keyword arguments."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    lo, hi = decay_range
    args = dict(
        u=randn(B, N, H, D),
        decay=lo + (hi - lo) * rand(H, S),
        freq=3.0 * rand(H, S) - 1.0,
        c_fwd=randn(H, S, D, 2) / S,
        c_bwd=randn(H, S, D, 2) / S if bilateral else None,
        gate=0.2 + rand(B, H, S) if gate else None,
        state_fwd=randn(B, H, S, D, 2) if states else None,
        state_bwd=randn(B, H, S, D, 2) if states and bilateral else None,
    )
    return {k: (v.to(dtype).requires_grad_(requires_grad) if v is not None else None)
            for k, v in args.items()}
