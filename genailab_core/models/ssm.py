"""A diagonal state-space layer (S4D, Gu et al. 2022) along a real sequence axis (chapter 13).

Continuous time, one state of size N per channel d, A diagonal, real and negative:

    h'(t) = A h(t) + B u(t),    y(t) = C h(t) + D u(t).

Sampled at times t_0 < t_1 < ... (days of a time course, pseudotime bins; irregular gaps allowed), with A
discretized exactly (zero-order hold) and B by Euler, as Mamba does (Gu & Dao 2023):

    h_k = exp(A dt_k) h_{k-1} + dt_k B u_k,      y_k = C h_k + D u_k,      dt_k = s (t_k - t_{k-1}),

with s = exp(log_dt) a learned time scale per channel (S4D's step size Delta, initialised log-uniform in
[dt_min, dt_max] = [0.001, 0.1], Gu et al. 2022, section 4): the times may come in any unit (days), and the channels
start with memories from much shorter to much longer than the sequence.
Unrolled, y_k = sum_{j <= k} C exp(A (t_k - t_j) s) B dt_j u_j + D u_k: a causal kernel in the elapsed time, so
the whole sequence is computed at once (``forward``, a masked (L, L) kernel per channel: the "quadratic" form
of Dao & Gu 2024), and ``recurrence`` runs the steps one by one (the test checks they agree to 1e-5).

An SSM needs an order. Genes have none, so the layer takes the times explicitly and refuses unordered ones.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .tensors import increasing_times


def check_times(times: torch.Tensor, length: int) -> torch.Tensor:
    """times: (L,) strictly increasing, one per sequence position; returns them as a float tensor."""
    return increasing_times(times, length, "An SSM runs along a real sequence axis (days of a time course, "
                                           "pseudotime bins); an arbitrary order, such as the order of genes, is not "
                                           "a sequence")


def time_steps(times: torch.Tensor) -> torch.Tensor:
    """dt_k = t_k - t_{k-1}, with dt_0 = dt_1 (or 1 for a single step): (L,)."""
    if len(times) == 1:
        return torch.ones(1, dtype=times.dtype, device=times.device)
    gaps = times[1:] - times[:-1]
    return torch.cat([gaps[:1], gaps])


class DiagonalSSM(nn.Module):
    """S4D-style diagonal SSM layer: u (B, L, D) at times (L,) -> y (B, L, D).

    A = -exp(log_a), initialised to -(1, 2, ..., N) per channel (S4D-Real, Gu et al. 2022, section 4);
    B = 1 and C ~ N(0, 1/N) per channel and state; D a per-channel skip connection; the time scale
    s = exp(log_dt) per channel, log-uniform in [dt_min, dt_max] at initialisation.
    """

    def __init__(self, channels: int, state_size: int = 16, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        n = torch.arange(1, state_size + 1, dtype=torch.float32)
        self.log_a = nn.Parameter(torch.log(n).repeat(channels, 1))                  # (D, N): A = -n
        log_range = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_range)                                          # (D,)
        self.b = nn.Parameter(torch.ones(channels, state_size))
        self.c = nn.Parameter(torch.randn(channels, state_size) / state_size ** 0.5)
        self.d = nn.Parameter(torch.ones(channels))
        self.channels, self.state_size = channels, state_size

    def _check(self, u: torch.Tensor, times) -> torch.Tensor:
        if u.dim() != 3 or u.shape[-1] != self.channels:
            raise ValueError(f"Expected u of shape (batch, length, {self.channels}), got {tuple(u.shape)}.")
        return check_times(times, u.shape[1]).to(u.device)

    def kernel(self, times: torch.Tensor) -> torch.Tensor:
        """K[k, j, d] = sum_n C exp(A s (t_k - t_j)) B s dt_j for j <= k, else 0: (L, L, D)."""
        a, scale = -torch.exp(self.log_a), torch.exp(self.log_dt)                      # (D, N), (D,)
        elapsed = (times[:, None] - times[None, :]).clamp_min(0.0)                      # (L, L)
        decay = torch.exp(elapsed[:, :, None, None] * (a * scale[:, None]))             # (L, L, D, N)
        k = (decay * (self.c * self.b)).sum(-1) * (time_steps(times)[:, None] * scale)  # (L, L, D)
        causal = torch.tril(torch.ones(len(times), len(times), device=times.device, dtype=torch.bool))
        return k * causal[:, :, None]

    def forward(self, u: torch.Tensor, times) -> torch.Tensor:
        times = self._check(u, times)
        return torch.einsum("kjd,bjd->bkd", self.kernel(times), u) + self.d * u

    def recurrence(self, u: torch.Tensor, times) -> torch.Tensor:
        """The same map, one step at a time: h_k = exp(A dt_k) h_{k-1} + dt_k B u_k. (B, L, D) -> (B, L, D)."""
        times = self._check(u, times)
        a, scale = -torch.exp(self.log_a), torch.exp(self.log_dt)[:, None]            # (D, N), (D, 1)
        dt = time_steps(times)
        h = u.new_zeros(u.shape[0], self.channels, self.state_size)                     # (B, D, N)
        ys = []
        for k in range(u.shape[1]):
            h = torch.exp(a * scale * dt[k]) * h + dt[k] * scale * self.b * u[:, k, :, None]
            ys.append((self.c * h).sum(-1) + self.d * u[:, k])
        return torch.stack(ys, 1)


class BidirectionalSSM(nn.Module):
    """A token mixer along a fixed, real sequence axis: a forward and a backward ``DiagonalSSM`` summed, as
    bidirectional Mamba blocks do (Vision Mamba, Zhu et al. 2024; Caduceus, Schiff et al. 2024).

    A causal SSM lets position k read only positions <= k. A denoiser must see the whole sequence (the noisy
    day 7 says something about day 0), so a second SSM runs on the reversed sequence, whose times -t_L < ... < -t_1
    are again increasing. times: (L,) strictly increasing, fixed at construction (the sampling days).

    Time unit: S4D's step range [0.001, 0.1] is meant for thousands of unit steps. A time course has a handful, so
    the times are measured in units of their median gap and the time scales start log-uniform in [dt_min, dt_max] =
    [0.01, 1]: with A = -(1..N) the slowest states then remember the whole sequence and the fastest forget within a
    step. h: (B, L, D) -> (B, L, D): the call a ``dit.AdaLNZeroBlock`` makes of its mixer.
    """

    def __init__(self, channels: int, times, state_size: int = 16, dt_min: float = 1e-2, dt_max: float = 1.0):
        super().__init__()
        times = torch.as_tensor(times, dtype=torch.float32)
        self.register_buffer("times", check_times(times, len(times)))
        gap = float((times[1:] - times[:-1]).median()) if len(times) > 1 else 1.0
        self.register_buffer("steps", (times - times[0]) / gap)                 # (L,) in units of the median gap
        self.forward_ssm = DiagonalSSM(channels, state_size, dt_min, dt_max)
        self.backward_ssm = DiagonalSSM(channels, state_size, dt_min, dt_max)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 3 or h.shape[1] != len(self.times):
            raise ValueError(f"Expected h of shape (batch, {len(self.times)} sequence positions, channels), "
                             f"got {tuple(h.shape)}: this mixer was built for the times {self.times.tolist()}.")
        backward_steps = -self.steps.flip(0)
        return self.forward_ssm(h, self.steps) + self.backward_ssm(h.flip(1), backward_steps).flip(1)
