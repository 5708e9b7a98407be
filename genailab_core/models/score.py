"""Noise-conditional score networks (NCSN; Song & Ermon 2019) and the three ways to fit a score.

A score model learns s_theta(x, sigma) ~ grad_x log q_sigma(x), the score of the data smoothed by
N(0, sigma^2 I), at every noise level sigma_t of a variance-exploding schedule (``schedules.VE``), and samples
by annealed Langevin dynamics from the largest sigma down to the smallest (``samplers.annealed_langevin``).
Following Song & Ermon (2020, technique 3) the network predicts sigma_t * score: s_theta = network / sigma_t.

Each objective is weighted by lambda(sigma) = sigma^2 (Song & Ermon 2019, eq. 6), which makes the losses of
all levels of one size. Per cell, summed over the d genes, on x~ = x + sigma z:

- ``dsm``: 1/2 || sigma s(x~) + z ||^2, denoising score matching (Vincent 2011; Song & Ermon 2019, eq. 2);
- ``ism``: sigma^2 [tr grad_x s(x~) + 1/2 ||s(x~)||^2], implicit score matching (Hyvarinen 2005, eq. 4),
  exact Jacobian trace, so d backward passes (d <= 64);
- ``ssm``: sigma^2 [v' grad_x s(x~) v + 1/2 ||s(x~)||^2], v ~ N(0, I), sliced score matching with variance
  reduction (Song et al. 2019, eq. 8), one backward pass per projection.

ISM and SSM equal 1/2 sigma^2 E||s - grad log q_sigma||^2 minus a constant that does not depend on s; DSM
exceeds ISM by exactly d/2 (Vincent 2011, eq. 11 times sigma^2).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..schedules import VE
from .base import LossOutput
from .tensors import batch_codes, batch_times, column, feature_count, module_device

OBJECTIVES = ("dsm", "ssm", "ism")
MAX_ISM_DIMENSION = 64

ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


def dsm_loss(score: ScoreFunction, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """sigma^2-weighted denoising score matching per cell: 1/2 || sigma s(x0 + sigma z) + z ||^2, i.e.
    sigma^2 * 1/2 || s(x~) - grad log q(x~ | x0) ||^2 with grad log q = -z / sigma (Vincent 2011, eq. 9).

    score: (B, d) -> (B, d) at this noise level; x0, noise: (B, d); sigma: (B, 1) or () -> (B,).
    """
    return 0.5 * ((sigma * score(x0 + sigma * noise) + noise) ** 2).sum(-1)


def ism_loss(score: ScoreFunction, x: torch.Tensor) -> torch.Tensor:
    """Implicit score matching per cell: tr(grad_x s(x)) + 1/2 ||s(x)||^2 (Hyvarinen 2005, eq. 4), with the
    exact Jacobian trace (one backward pass per dimension). x: (B, d) -> (B,). Differentiable in s."""
    if x.shape[-1] > MAX_ISM_DIMENSION:
        raise ValueError(f"Implicit score matching computes the exact Jacobian trace, one backward pass per "
                         f"dimension; d = {x.shape[-1]} > {MAX_ISM_DIMENSION}. Use objective='ssm' or 'dsm'.")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x)                                                                        # (B, d)
        trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
        return trace + 0.5 * (s ** 2).sum(-1)


def ssm_loss(score: ScoreFunction, x: torch.Tensor, n_projections: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sliced score matching with variance reduction per cell (Song et al. 2019, eq. 8):
    mean over v ~ N(0, I) of v' grad_x s(x) v, plus 1/2 ||s(x)||^2 (the expectation of 1/2 (v' s)^2 in closed form).
    x: (B, d) -> (B,). Differentiable in s."""
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}.")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x)                                                                        # (B, d)
        slices = 0.0
        for _ in range(n_projections):
            v = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            jvp = torch.autograd.grad((v * s).sum(), x, create_graph=True)[0]               # (grad_x s)' v
            slices = slices + (jvp * v).sum(-1)
        return slices / n_projections + 0.5 * (s ** 2).sum(-1)


class ScoreModel(nn.Module):
    """NCSN over a ``VE`` schedule (Song & Ermon 2019): s_theta(x, t) = network(x, t, codes) / sigma_t.

    network: ``(x: (B, d), t: (B,), codes) -> (B, d)``, e.g. ``nn.ConditionalMLP``.
    objective: "dsm", "ssm" or "ism" (see the module docstring), each weighted by sigma_t^2.
    n_levels: None trains at t ~ U(t_min, 1) (log-uniform sigma); an integer L at NCSN's L geometric levels
        t_i = linspace(0, 1, L), sigma_i = ``schedule.noise_levels(L)``, one drawn uniformly per cell.
    n_projections: random directions per cell for "ssm".
    """

    def __init__(self, network: nn.Module, schedule: VE, objective: str = "dsm", condition_keys: Sequence[str] = (),
                 n_levels: int | None = None, n_projections: int = 1, t_min: float = 0.0):
        super().__init__()
        if not isinstance(schedule, VE):
            raise ValueError(f"A noise-conditional score network uses the noise levels of a VE schedule, got "
                             f"{type(schedule).__name__}. Use schedules.VE(sigma_min, sigma_max), or models.Diffusion "
                             "for variance-preserving paths.")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
        if objective == "ism" and feature_count(network) > MAX_ISM_DIMENSION:
            raise ValueError(f"objective='ism' needs the exact Jacobian trace, d backward passes; d = "
                             f"{feature_count(network)} > {MAX_ISM_DIMENSION}. Use 'ssm' or 'dsm'.")
        if n_levels is not None and n_levels < 2:
            raise ValueError(f"n_levels must be None (continuous) or >= 2, got {n_levels}.")
        if n_projections < 1 or not 0.0 <= t_min < 1.0:
            raise ValueError(f"Need n_projections >= 1 and 0 <= t_min < 1, got {n_projections}, {t_min}.")
        self.network, self.schedule, self.objective = network, schedule, objective
        self.condition_keys, self.n_levels, self.n_projections, self.t_min = (list(condition_keys), n_levels,
                                                                             n_projections, t_min)

    def score(self, x: torch.Tensor, t, codes: torch.Tensor | None = None) -> torch.Tensor:
        """s_theta(x, t) = network(x, t, codes) / sigma_t (Song & Ermon 2020, technique 3). x: (B, d) -> (B, d)."""
        t = batch_times(t, x)
        return self.network(x, t, codes) / column(self.schedule.sigma(t))

    def training_times(self, n: int, device=None) -> torch.Tensor:
        """t: (n,), uniform on [t_min, 1] or on the n_levels NCSN levels."""
        if self.n_levels is None:
            return self.t_min + (1.0 - self.t_min) * torch.rand(n, device=device)
        return torch.randint(self.n_levels, (n,), device=device) / (self.n_levels - 1)

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """The sigma^2-weighted objective per cell (summed over genes), mean over cells (Song & Ermon 2019, eq. 6)."""
        x0 = batch["x"]
        codes = batch_codes(batch, self.condition_keys)
        t = self.training_times(x0.shape[0], x0.device)                                    # (B,)
        sigma = column(self.schedule.sigma(t))                                               # (B, 1)
        noise = torch.randn_like(x0)

        def score(x):
            return self.score(x, t, codes)

        if self.objective == "dsm":
            per_cell = dsm_loss(score, x0, sigma, noise)
        elif self.objective == "ism":
            per_cell = sigma[:, 0] ** 2 * ism_loss(score, x0 + sigma * noise)
        else:
            per_cell = sigma[:, 0] ** 2 * ssm_loss(score, x0 + sigma * noise, self.n_projections)
        loss = per_cell.mean()
        return LossOutput(loss=loss, terms={self.objective: loss.detach()})

    @torch.no_grad()
    def sample(self, n: int, n_levels: int = 10, steps_per_level: int = 100, step_size: float = 2e-5,
               codes: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points (n, d) by annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) from N(0, sigma_max^2 I),
        ``steps_per_level`` steps at each of ``n_levels`` geometric noise levels, step a_i = step_size *
        sigma_i^2 / sigma_L^2, the levels at times linspace(1, t_min, n_levels). codes: (n, n_keys) for a
        conditional network."""
        from .. import samplers

        self.eval()
        device = module_device(self)
        x = self.schedule.prior(n, feature_count(self.network), device=device, generator=generator)
        return samplers.annealed_langevin(lambda x, t: self.score(x, t, codes), self.schedule, x, n_levels,
                                          steps_per_level, step_size, generator=generator, t_min=self.t_min)
