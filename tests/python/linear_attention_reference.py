"""An independent float64 reference of laplace_linear_attention.

The quadratic form: y_t = sum_s (q_t . k_s) K(t - s) v_s with the lag kernel
K(tau) = Re sum_k gate_k c_k a_k^|tau| (c_fwd for tau >= 0, c_bwd for tau < 0),
built as an N x N matrix from powers a^t = exp(t * log a), never by a
recurrence; the states directly as sums of a^(lag) k_s v_s^T.
"""
import torch


def _complex(x):
    return torch.complex(x[..., 0], x[..., 1])


def _real_pair(z):
    return torch.stack([z.real, z.imag], dim=-1)


def reference_linear_attention(q, k, v, decay, freq, c_fwd, c_bwd=None, gate=None,
                               state_fwd=None, state_bwd=None):
    dt, ct = torch.float64, torch.complex128
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    B, N, H, Dk = q.shape
    Dv = v.shape[3]
    S = decay.shape[1]
    log_a = torch.complex(-decay.to(dt), -freq.to(dt))  # [H, S]
    g = torch.ones(B, H, S, dtype=dt) if gate is None else gate.to(dt)
    n = torch.arange(N, dtype=dt)
    lag = n[:, None] - n[None, :]  # t - s

    def powers(t):  # a^t -> [H, S, *t.shape]
        return torch.exp(t.to(ct) * log_a.reshape(H, S, *([1] * t.dim())))

    wf = g.to(ct) * _complex(c_fwd.to(dt))  # [B, H, S]
    kernel = torch.einsum("bhs,hstu->bhtu", wf, powers(lag.clamp(min=0))).real * (lag >= 0)
    if c_bwd is not None:
        wb = g.to(ct) * _complex(c_bwd.to(dt))
        anti = torch.einsum("bhs,hstu->bhtu", wb, powers((-lag).clamp(min=0))).real * (lag < 0)
        kernel = kernel + anti
    scores = torch.einsum("bthd,bshd->bhts", q, k) * kernel
    y = torch.einsum("bhts,bshe->bthe", scores, v)

    kv = torch.einsum("bshd,bshe->bhsde", k.to(ct), v.to(ct))  # [B, H, N, Dk, Dv]
    zeros = torch.zeros(B, H, S, Dk, Dv, dtype=ct)
    s_fwd = _complex(state_fwd.to(dt)) if state_fwd is not None else zeros
    s_bwd = _complex(state_bwd.to(dt)) if state_bwd is not None else zeros
    if state_fwd is not None:
        w = wf[:, :, :, None] * powers(n + 1)[None]  # [B, H, S, N]
        y = y + torch.einsum("bhst,bthd,bhsde->bthe", w, q.to(ct), s_fwd).real
    final_fwd = (torch.einsum("hsr,bhrde->bhsde", powers(N - 1 - n), kv)
                 + powers(torch.tensor(float(N)))[None, :, :, None, None] * s_fwd)
    if c_bwd is None:
        return y, _real_pair(final_fwd), torch.zeros(B, H, S, Dk, Dv, 2, dtype=dt)
    if state_bwd is not None:
        w = wb[:, :, :, None] * powers(N - n)[None]
        y = y + torch.einsum("bhst,bthd,bhsde->bthe", w, q.to(ct), s_bwd).real
    first_bwd = (torch.einsum("hsr,bhrde->bhsde", powers(n), kv)
                 + powers(torch.tensor(float(N)))[None, :, :, None, None] * s_bwd)
    return y, _real_pair(final_fwd), _real_pair(first_bwd)


def make_linear_inputs(B=2, N=70, H=2, Dk=3, Dv=4, S=3, dtype=torch.float64, bilateral=True,
                       gate=False, states=False, seed=0, requires_grad=False):
    """Inputs of one call; N = 70 crosses a chunk boundary (chunks of 64)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    args = {
        "q": randn(B, N, H, Dk, scale=0.5),
        "k": randn(B, N, H, Dk, scale=0.5),
        "v": randn(B, N, H, Dv),
        "decay": (torch.rand(H, S, generator=g, dtype=torch.float64) * 0.3 + 0.01).to(dtype),
        "freq": (torch.rand(H, S, generator=g, dtype=torch.float64) * 1.5).to(dtype),
        "c_fwd": randn(H, S, 2),
        "c_bwd": randn(H, S, 2) if bilateral else None,
        "gate": (torch.rand(B, H, S, generator=g, dtype=torch.float64) + 0.5).to(dtype)
        if gate else None,
        "state_fwd": randn(B, H, S, Dk, Dv, 2, scale=0.3) if states else None,
        "state_bwd": randn(B, H, S, Dk, Dv, 2, scale=0.3) if states and bilateral else None,
    }
    if requires_grad:
        for t in args.values():
            if t is not None:
                t.requires_grad_(True)
    return args
