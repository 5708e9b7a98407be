"""Energy-based models (chapter 12): p_theta(x) = exp(-E_theta(x)) / Z_theta, with Z_theta unknown.

Two ways to train E without computing Z:

- **Contrastive divergence** with persistent Langevin chains and a replay buffer (Hinton 2002; Tieleman 2008;
  Du & Mordatch 2019): lower the energy of data, raise it where the model's own samples are,
  grad of E(x_data) - E(x_model), with negatives refreshed by a few Langevin steps from a buffer of old ones.
- **Noise-contrastive estimation** (Gutmann & Hyvärinen 2010): classify data against draws of a known noise
  density q with the logit log p_theta(x) - log q(x) - log nu, where log p_theta = -E - c and the offset c is
  learned. At the optimum c = log Z: NCE estimates the log-partition function as well.

The score of an energy model is -grad E (chapter 6's object, without a normalizing constant), so Langevin
dynamics samples it. The network maps (B, d) -> (B,) or (B, 1) and knows no loss.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import LossOutput
from .tensors import input_gradient

OBJECTIVES = ("cd", "nce")


def energy_gradient(energy: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """grad_x E(x) by autograd, also under torch.no_grad(): (B, d) -> (B, d)."""
    return input_gradient(energy, x)


@torch.no_grad()
def langevin(energy: nn.Module, x: torch.Tensor, n_steps: int, step_size: float, noise_scale: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics on exp(-E) (Welling & Teh 2011):
    x <- x - (step_size / 2) grad E(x) + noise_scale sqrt(step_size) z. noise_scale = 1 samples exp(-E) as
    step_size -> 0; Du & Mordatch use a smaller one for faster mixing. x: (B, d) -> (B, d)."""
    if n_steps < 0 or step_size <= 0:
        raise ValueError(f"Need n_steps >= 0 and step_size > 0, got {n_steps}, {step_size}.")
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x - 0.5 * step_size * energy_gradient(energy, x) + noise_scale * math.sqrt(step_size) * z
    return x


class ReplayBuffer:
    """Persistent chains (Tieleman 2008) with restarts (Du & Mordatch 2019, section 3.1): each negative batch
    starts from stored samples, except a share ``restart`` drawn fresh from the prior. Holds at most ``size``."""

    def __init__(self, prior: torch.distributions.Distribution, size: int = 10_000, restart: float = 0.05):
        if not 0.0 <= restart <= 1.0 or size < 1:
            raise ValueError(f"Need size >= 1 and restart in [0, 1], got {size}, {restart}.")
        self.prior, self.size, self.restart = prior, size, restart
        self.samples: torch.Tensor | None = None

    def draw(self, n: int) -> torch.Tensor:
        """n starting points (n, d)."""
        fresh = self.prior.sample((n,))
        if self.samples is None or len(self.samples) == 0:
            return fresh
        old = self.samples[torch.randint(len(self.samples), (n,))]
        keep = (torch.rand(n) >= self.restart)[:, None]
        return torch.where(keep, old.to(fresh.device), fresh)

    def push(self, x: torch.Tensor) -> None:
        x = x.detach().cpu()
        self.samples = (x if self.samples is None else torch.cat([x, self.samples]))[: self.size]   # newest first


class EnergyModel(nn.Module):
    """E_theta(x) trained by contrastive divergence ("cd") or noise-contrastive estimation ("nce").

    network: (B, d) -> (B,) or (B, 1), the energy. prior: where fresh chains start (cd) or the noise q (nce),
    a torch distribution over d-vectors, e.g. ``Independent(Normal(mean, std), 1)`` fitted to the data.
    cd: ``langevin_steps`` of size ``step_size`` per batch from a ``ReplayBuffer``; ``l2`` penalizes E^2 of
    data and negatives, keeping energies near 0 (Du & Mordatch 2019, eq. 3). nce: ``nu`` noise draws per data
    point; ``log_z`` is the learned log-partition estimate c.
    """

    def __init__(self, network: nn.Module, prior: torch.distributions.Distribution, objective: str = "cd",
                 langevin_steps: int = 20, step_size: float = 1e-2, noise_scale: float = 1.0, l2: float = 0.0,
                 buffer_size: int = 10_000, restart: float = 0.05, nu: int = 1):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
        if nu < 1:
            raise ValueError(f"nu (noise draws per data point) must be >= 1, got {nu}.")
        self.network, self.prior, self.objective = network, prior, objective
        self.langevin_steps, self.step_size, self.noise_scale, self.l2, self.nu = (
            langevin_steps, step_size, noise_scale, l2, nu)
        self.buffer = ReplayBuffer(prior, buffer_size, restart)
        self.log_z = nn.Parameter(torch.zeros(()))                  # NCE's offset c; unused by CD

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E_theta(x): (B, d) -> (B,)."""
        e = self.network(x)
        return e.reshape(len(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p_theta(x) = -grad_x E(x): (B, d) -> (B, d); Z drops out."""
        return -energy_gradient(self, x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """-E(x) - c: normalized only once NCE has fitted c = log Z. (B, d) -> (B,)."""
        return -self.energy(x) - self.log_z

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        x = batch["x"]
        return self._cd_loss(x) if self.objective == "cd" else self._nce_loss(x)

    def _cd_loss(self, x: torch.Tensor) -> LossOutput:
        """E(data) - E(negatives) + l2 (E(data)^2 + E(negatives)^2), negatives by persistent Langevin."""
        start = self.buffer.draw(len(x)).to(x)
        negatives = langevin(self, start, self.langevin_steps, self.step_size, self.noise_scale)
        self.buffer.push(negatives)
        e_data, e_model = self.energy(x), self.energy(negatives.detach())
        gap = e_data.mean() - e_model.mean()
        loss = gap + self.l2 * (e_data.pow(2).mean() + e_model.pow(2).mean())
        return LossOutput(loss=loss, terms={"energy_gap": gap.detach(), "energy_data": e_data.mean().detach()})

    def _nce_loss(self, x: torch.Tensor) -> LossOutput:
        """Logistic loss of data (label 1) against nu noise draws per point (label 0), with the logit
        G(x) = log p_theta(x) - log q(x) - log nu (Gutmann & Hyvärinen 2010, eq. 8 with nu = T_n / T_d)."""
        noise = self.prior.sample((self.nu * len(x),)).to(x)

        def logit(v):
            return self.log_prob(v) - self.prior.log_prob(v).to(v) - math.log(self.nu)

        loss = -(F.logsigmoid(logit(x)).sum() + F.logsigmoid(-logit(noise)).sum()) / len(x)
        return LossOutput(loss=loss, terms={"log_z": self.log_z.detach()})

    @torch.no_grad()
    def sample(self, n: int, n_steps: int = 200, step_size: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, d) by Langevin dynamics from the prior (noise_scale 1)."""
        x = self.prior.sample((n,))
        return langevin(self, x, n_steps, step_size or self.step_size, 1.0, generator)
