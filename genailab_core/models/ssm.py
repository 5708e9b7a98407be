"""A diagonal state-space layer (S4D, Gu et al. 2022) along a real sequence axis (chapter 13).

Continuous time, one state of size N per channel d, A diagonal, real and negative:

    h'(t) = A h(t) + B u(t),    y(t) = C h(t) + D u(t).

Sampled at times t_0 < t_1 < ... (days of a time course, pseudotime bins; irregular gaps allowed), with A
discretized exactly (zero-order hold) and B by Euler, as Mamba does (Gu & Dao 2023):

    h_k = exp(A dt_k) h_{k-1} + dt_k B u_k,      y_k = C h_k + D u_k,      dt_k = t_k - t_{k-1}.

Unrolled, y_k = sum_{j <= k} C exp(A (t_k - t_j)) B dt_j u_j + D u_k: a causal kernel in the elapsed time, so
the whole sequence is computed at once (``forward``, a masked (L, L) kernel per channel: the "quadratic" form
of Dao & Gu 2024), and ``recurrence`` runs the steps one by one (the test checks they agree to 1e-5).

An SSM needs an order. Genes have none, so the layer takes the times explicitly and refuses unordered ones.
"""
from __future__ import annotations

import torch
from torch import nn


def check_times(times: torch.Tensor, length: int) -> torch.Tensor:
    """times: (L,) strictly increasing, one per sequence position; returns them as a float tensor."""
    times = torch.as_tensor(times, dtype=torch.float32)
    if times.dim() != 1 or len(times) != length:
        raise ValueError(f"times must be a 1-D tensor with one time per sequence position ({length}), "
                         f"got shape {tuple(times.shape)}.")
    if length > 1 and not bool((times[1:] > times[:-1]).all()):
        raise ValueError("An SSM runs along a real sequence axis: its times must be strictly increasing (days of a "
                         "time course, pseudotime bins). Sort the inputs by time first; an arbitrary order, such as "
                         "the order of genes, is not a sequence.")
    return times


def time_steps(times: torch.Tensor) -> torch.Tensor:
    """dt_k = t_k - t_{k-1}, with dt_0 = dt_1 (or 1 for a single step): (L,)."""
    if len(times) == 1:
        return torch.ones(1, dtype=times.dtype, device=times.device)
    gaps = times[1:] - times[:-1]
    return torch.cat([gaps[:1], gaps])


class DiagonalSSM(nn.Module):
    """S4D-style diagonal SSM layer: u (B, L, D) at times (L,) -> y (B, L, D).

    A = -exp(log_a), initialised to -(1, 2, ..., N) per channel (S4D-Real, Gu et al. 2022, section 4);
    B = 1 and C ~ N(0, 1/N) per channel and state; D a per-channel skip connection.
    """

    def __init__(self, channels: int, state_size: int = 16):
        super().__init__()
        n = torch.arange(1, state_size + 1, dtype=torch.float32)
        self.log_a = nn.Parameter(torch.log(n).repeat(channels, 1))                  # (D, N): A = -n
        self.b = nn.Parameter(torch.ones(channels, state_size))
        self.c = nn.Parameter(torch.randn(channels, state_size) / state_size ** 0.5)
        self.d = nn.Parameter(torch.ones(channels))
        self.channels, self.state_size = channels, state_size

    def _check(self, u: torch.Tensor, times) -> torch.Tensor:
        if u.dim() != 3 or u.shape[-1] != self.channels:
            raise ValueError(f"Expected u of shape (batch, length, {self.channels}), got {tuple(u.shape)}.")
        return check_times(times, u.shape[1]).to(u.device)

    def kernel(self, times: torch.Tensor) -> torch.Tensor:
        """K[k, j, d] = sum_n C exp(A (t_k - t_j)) B dt_j for j <= k, else 0: (L, L, D)."""
        a = -torch.exp(self.log_a)                                                     # (D, N)
        elapsed = (times[:, None] - times[None, :]).clamp_min(0.0)                      # (L, L)
        decay = torch.exp(elapsed[:, :, None, None] * a)                                # (L, L, D, N)
        k = (decay * (self.c * self.b)).sum(-1) * time_steps(times)[None, :, None]      # (L, L, D)
        causal = torch.tril(torch.ones(len(times), len(times), device=times.device, dtype=torch.bool))
        return k * causal[:, :, None]

    def forward(self, u: torch.Tensor, times) -> torch.Tensor:
        times = self._check(u, times)
        return torch.einsum("kjd,bjd->bkd", self.kernel(times), u) + self.d * u

    def recurrence(self, u: torch.Tensor, times) -> torch.Tensor:
        """The same map, one step at a time: h_k = exp(A dt_k) h_{k-1} + dt_k B u_k. (B, L, D) -> (B, L, D)."""
        times = self._check(u, times)
        a, dt = -torch.exp(self.log_a), time_steps(times)
        h = u.new_zeros(u.shape[0], self.channels, self.state_size)                     # (B, D, N)
        ys = []
        for k in range(u.shape[1]):
            h = torch.exp(a * dt[k]) * h + dt[k] * self.b * u[:, k, :, None]
            ys.append((self.c * h).sum(-1) + self.d * u[:, k])
        return torch.stack(ys, 1)
