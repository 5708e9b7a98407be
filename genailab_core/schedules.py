"""Noise schedules and probability paths: how data x_0 and Gaussian noise are mixed at time t.

Every path of Part III is one Gaussian marginal (Kingma et al. 2021; Lipman et al. 2023, eq. 16):

    x_t = alpha_t x_0 + sigma_t eps,    eps ~ N(0, I),    t in [0, 1],

with **t = 0 the data and t = 1 the noise** (the convention of DDPM, the SDE papers and diffusers).
torchcfm and Lipman et al. run time the other way (t = 0 noise): their t is our 1 - t and their
velocity is minus ours. A schedule gives alpha_t, sigma_t and their time derivatives in closed form;
from them follow the conditional velocity u_t = alpha'_t x_0 + sigma'_t eps (what flow matching
regresses), the log signal-to-noise ratio, the drift and diffusion of the forward SDE
(Song et al. 2021) and, for the VP schedules, DDPM's discrete betas.

Schedules are plain objects of numbers and closed forms: networks, losses and solvers live elsewhere.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

__all__ = ["LinearPath", "PathSample", "Schedule", "VE", "VPCosine", "VPLinear", "ddpm_betas"]


@dataclass
class PathSample:
    """One draw from the path for a batch of data points.

    t: (batch,); x_t, noise, velocity: (batch, d), with velocity = d x_t / dt = alpha'_t x_0 + sigma'_t eps.
    """

    t: torch.Tensor
    x_t: torch.Tensor
    noise: torch.Tensor
    velocity: torch.Tensor


class Schedule(ABC):
    """x_t = alpha(t) x_0 + sigma(t) eps. Subclasses give alpha, sigma and their derivatives in closed form.

    Every method takes t: (batch,) (or a scalar tensor) and returns the same shape.
    """

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal coefficient alpha_t."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise coefficient sigma_t."""

    @abstractmethod
    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha_t / dt."""

    @abstractmethod
    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma_t / dt."""

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t^2 / sigma_t^2) (Kingma et al. 2021, eq. 3); falls with t."""
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def sample(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> PathSample:
        """Draw x_t ~ q(x_t | x_0) and its conditional velocity. x0: (batch, d); t: (batch,), default U(0, 1)."""
        if t is None:
            t = torch.rand(x0.shape[0], device=x0.device, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        a, s, da, ds = (_column(f(t), x0) for f in (self.alpha, self.sigma, self.d_alpha, self.d_sigma))
        return PathSample(t=t, x_t=a * x0 + s * noise, noise=noise, velocity=da * x0 + ds * noise)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) and diffusion g(t) of the forward SDE dx = f dt + g dW whose marginals are the path's
        (Song et al. 2021, eq. 5; Kingma et al. 2021, appendix A):

            f(x, t) = (alpha'_t / alpha_t) x,    g(t)^2 = d sigma_t^2 / dt - 2 (alpha'_t / alpha_t) sigma_t^2.

        x: (batch, d), t: (batch,) -> f: (batch, d), g: (batch,).
        """
        log_alpha_rate = self.d_alpha(t) / self.alpha(t)
        g2 = self._d_sigma_squared(t) - 2 * log_alpha_rate * self.sigma(t) ** 2
        return _column(log_alpha_rate, x) * x, torch.sqrt(g2.clamp_min(0.0))

    def _d_sigma_squared(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma_t^2 / dt; variance-preserving schedules override it, as 2 sigma sigma' is 0 * inf at t = 0."""
        return 2 * self.sigma(t) * self.d_sigma(t)

    def prior(self, n: int, d: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Samples from the end of the path, N(alpha_1 * 0, sigma_1^2 I) (the data's mean taken as 0): (n, d)."""
        one = torch.ones((), device=device)
        return self.sigma(one) * torch.randn(n, d, device=device, generator=generator)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v:g}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(batch,) or () -> broadcastable against like: (batch, d)."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return v.reshape(-1, *([1] * (like.dim() - 1))) if v.dim() > 0 else v


class VPLinear(Schedule):
    """Variance-preserving SDE with a linear beta(t) = beta_min + t (beta_max - beta_min)
    (Song et al. 2021, eq. 11; the continuous limit of DDPM, Ho et al. 2020):

        alpha_t = exp(-1/2 int_0^t beta(s) ds) = exp(-t^2 (beta_max - beta_min) / 4 - t beta_min / 2),
        sigma_t = sqrt(1 - alpha_t^2).

    beta_min = 0.1, beta_max = 20 are DDPM's betas 1e-4 .. 0.02 times its 1,000 steps.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"Need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}.")
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return torch.exp(-0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * torch.log(self.alpha(t))))       # sqrt(1 - alpha^2), stable near t = 0

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def _d_sigma_squared(self, t):
        return -2 * self.alpha(t) * self.d_alpha(t)                          # sigma^2 = 1 - alpha^2, finite at t = 0

    def discrete_betas(self, n_steps: int) -> torch.Tensor:
        """DDPM's betas: beta_i = beta(t_i) / N at N evenly spaced t_i from 0 to 1 (Song et al. 2021, app. B):
        linspace(beta_min / N, beta_max / N, N), Ho et al.'s 1e-4 .. 0.02 for N = 1,000. (n_steps,) float64."""
        t = torch.linspace(0.0, 1.0, n_steps, dtype=torch.float64)
        return self.beta(t) / n_steps


class VPCosine(Schedule):
    """The cosine schedule of Nichol & Dhariwal (2021, eq. 17), variance-preserving:

        alpha_t^2 = f(t) / f(0),  f(t) = cos^2((t + s) / (1 + s) * pi / 2),   sigma_t = sqrt(1 - alpha_t^2).

    alpha_1 = 0 exactly, so sample from t slightly below 1 (or from the discrete betas, capped at 0.999).
    """

    def __init__(self, s: float = 0.008):
        if s <= 0:
            raise ValueError(f"The offset s must be > 0, got {s}.")
        self.s = s

    def _angle(self, t):
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def alpha(self, t):
        return torch.cos(self._angle(t)) / math.cos(self.s / (1 + self.s) * math.pi / 2)

    def sigma(self, t):
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0.0))

    def d_alpha(self, t):
        return -torch.sin(self._angle(t)) * (math.pi / 2) / (1 + self.s) / math.cos(self.s / (1 + self.s) * math.pi / 2)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def _d_sigma_squared(self, t):
        return -2 * self.alpha(t) * self.d_alpha(t)                          # sigma^2 = 1 - alpha^2, finite at t = 0

    def discrete_betas(self, n_steps: int, max_beta: float = 0.999) -> torch.Tensor:
        """beta_i = min(1 - alphabar(t_{i+1}) / alphabar(t_i), max_beta), t_i = i / N (Nichol & Dhariwal 2021,
        section 3.2; diffusers' "squaredcos_cap_v2"). (n_steps,) float64."""
        t = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
        alpha_bar = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


class VE(Schedule):
    """Variance-exploding SDE (Song et al. 2021, eq. 9; the NCSN noise levels of Song & Ermon 2019):

        alpha_t = 1,   sigma_t = sigma_min (sigma_max / sigma_min)^t   (geometric).

    Choose sigma_max about the largest distance between two data points (Song & Ermon 2020, technique 1).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"Need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def alpha(self, t):
        return torch.ones_like(torch.as_tensor(t))

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def d_alpha(self, t):
        return torch.zeros_like(torch.as_tensor(t))

    def d_sigma(self, t):
        return self.sigma(t) * math.log(self.sigma_max / self.sigma_min)

    def noise_levels(self, n: int) -> torch.Tensor:
        """NCSN's n geometric noise levels from sigma_max down to sigma_min (Song & Ermon 2019): (n,)."""
        return self.sigma(torch.linspace(1.0, 0.0, n))


class LinearPath(Schedule):
    """The straight path of rectified flow and conditional flow matching (Liu et al. 2023; Lipman et al.
    2023, eq. 20 with sigma_min = 0; Tong et al. 2024's I-CFM):

        alpha_t = 1 - t,   sigma_t = t,   u_t = eps - x_0 (constant along each pair's line).
    """

    def alpha(self, t):
        return 1 - t

    def sigma(self, t):
        return t

    def d_alpha(self, t):
        return -torch.ones_like(torch.as_tensor(t))

    def d_sigma(self, t):
        return torch.ones_like(torch.as_tensor(t))


def ddpm_betas(schedule: Schedule, n_steps: int) -> torch.Tensor:
    """The discrete DDPM betas of a variance-preserving schedule (n_steps,), float64; their
    cumulative product of (1 - beta) is DDPM's alphabar_i (Ho et al. 2020, eq. 4)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
    if not hasattr(schedule, "discrete_betas"):
        raise TypeError(f"{type(schedule).__name__} has no discrete DDPM betas; use VPLinear or VPCosine.")
    return schedule.discrete_betas(n_steps)
