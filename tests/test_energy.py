"""models/energy.py: contrastive divergence, noise-contrastive estimation and Langevin sampling, on Gaussians
whose log-partition function, mean and variance are known in closed form."""
import math

import anndata as ad
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import genailab_core as gl
from genailab_core.models.energy import EnergyModel, ReplayBuffer, langevin


class Quadratic(nn.Module):
    """E(x) = (x - m)^2 / (2 s^2) in 1-D: the energy of N(m, s^2), whose log Z = log(sqrt(2 pi) s)."""

    def __init__(self, m=0.0, s=1.0):
        super().__init__()
        self.m, self.log_s = nn.Parameter(torch.tensor(float(m))), nn.Parameter(torch.tensor(math.log(s)))

    def forward(self, x):
        return (x[:, 0] - self.m) ** 2 / (2 * torch.exp(2 * self.log_s))


def gaussian(mean, sd):
    return Independent(Normal(torch.tensor([float(mean)]), torch.tensor([float(sd)])), 1)


def fit(model, x, steps, lr, seed=0):
    gl.seed_everything(seed)
    gl.fit(model, gl.data.CountBatches(ad.AnnData(x), batch_size=256, seed=seed), steps=steps, lr=lr, progress=False)
    return model


def test_nce_recovers_the_mean_the_variance_and_the_log_partition_function_of_a_gaussian():
    x = np.random.default_rng(0).normal(1.0, 0.7, (4000, 1)).astype(np.float32)
    model = fit(EnergyModel(Quadratic(), gaussian(0.0, 2.0), objective="nce", nu=5), x, steps=1500, lr=0.05)
    s = math.exp(model.network.log_s.item())
    assert model.network.m.item() == pytest.approx(1.0, abs=0.05)
    assert s == pytest.approx(0.7, abs=0.05)
    assert model.log_z.item() == pytest.approx(0.5 * math.log(2 * math.pi) + math.log(s), abs=0.05)   # log Z


def test_contrastive_divergence_with_langevin_learns_the_mean_and_variance_of_a_gaussian():
    x = np.random.default_rng(1).normal(2.0, 0.5, (4000, 1)).astype(np.float32)
    model = EnergyModel(Quadratic(), gaussian(0.0, 3.0), objective="cd", langevin_steps=30, step_size=0.02,
                        restart=0.05)
    fit(model, x, steps=400, lr=0.03)
    assert model.network.m.item() == pytest.approx(2.0, abs=0.1)
    assert math.exp(model.network.log_s.item()) == pytest.approx(0.5, abs=0.1)


def test_langevin_reaches_the_moments_of_the_energys_gaussian_and_the_score_is_minus_the_gradient():
    energy = Quadratic(m=-1.0, s=2.0)
    x = langevin(energy, torch.zeros(4000, 1), n_steps=1500, step_size=0.05,
                 generator=torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(-1.0, abs=0.15)
    assert x.std().item() == pytest.approx(2.0, abs=0.1)
    model = EnergyModel(energy, gaussian(0.0, 1.0))
    points = torch.linspace(-3, 3, 7)[:, None]
    torch.testing.assert_close(model.score(points), -(points + 1.0) / 4.0)


def test_the_replay_buffer_restarts_the_asked_share_of_chains_and_keeps_at_most_its_size():
    buffer = ReplayBuffer(gaussian(100.0, 1e-3), size=50, restart=0.25)
    buffer.push(torch.zeros(80, 1))
    assert len(buffer.samples) == 50
    torch.manual_seed(0)
    start = buffer.draw(4000)
    assert (start > 50).float().mean().item() == pytest.approx(0.25, abs=0.03)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="objective"):
        EnergyModel(Quadratic(), gaussian(0, 1), objective="ml")
    with pytest.raises(ValueError, match="nu"):
        EnergyModel(Quadratic(), gaussian(0, 1), objective="nce", nu=0)
    with pytest.raises(ValueError, match="restart"):
        ReplayBuffer(gaussian(0, 1), restart=1.5)
