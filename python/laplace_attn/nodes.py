"""The Laplace nodes of an STLT layer, shared by STLTAttention and the transformers
integration: per head, S poles a = exp(-decay - i·freq) with decay = σ + 1/T (σ per
node, the window T per head) and freq = ω, and their readouts."""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def softplus_inverse(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


@torch.no_grad()
def init_nodes(sigma_raw: Tensor, omega: Tensor, window_raw: Tensor, sigma_min: float,
               expected_length: int, omega_max: float, window_fraction: float) -> None:
    """Half-lives from about one step to ``expected_length``, log-spaced; frequencies
    uniform in [0, omega_max); the window ``window_fraction * expected_length``."""
    H, S = sigma_raw.shape
    sigma = torch.logspace(math.log10(1.0 / expected_length), 0.0, S,
                           dtype=torch.float64).repeat(H, 1)
    sigma_raw.copy_(softplus_inverse(sigma - sigma_min))
    omega.uniform_(0.0, omega_max)
    window = torch.full((H,), window_fraction * expected_length, dtype=torch.float64)
    window_raw.copy_(softplus_inverse(window))


def node_poles(sigma_raw: Tensor, omega: Tensor, window_raw: Tensor,
               sigma_min: float) -> Tuple[Tensor, Tensor]:
    """(decay, freq), each [H, S]: decay = σ + 1/T, freq = ω."""
    sigma = F.softplus(sigma_raw) + sigma_min
    window = F.softplus(window_raw)
    return sigma + 1.0 / window[:, None], omega


def unit_variance_readout(c: Tensor, decay: Tensor) -> Tensor:
    """Readouts [H, S, D, 2] times sqrt(1 - |a|^2), which gives each node's state unit
    variance for white input whatever its decay, so slow nodes do not dominate."""
    return c * torch.sqrt(-torch.expm1(-2.0 * decay))[:, :, None, None]
