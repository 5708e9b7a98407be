"""Flow matching (models/flow.py): the minibatch OT pairing against scipy's assignment solver, the path and
target against torchcfm, sampling and straightness against the closed-form flow between two Gaussians,
a short training run, reflow's pairs, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import linear_sum_assignment
from torch import nn

from genailab_core.models.flow import FlowMatching, cfm_loss, ot_pairing, straightness
from genailab_core.nn import ConditionalMLP


class GaussianFlowVelocity(nn.Module):
    """The exact marginal velocity of the linear path between data N(m, s^2 I) at t = 0 and N(0, I) at t = 1
    under the independent coupling. x_t = (1 - t) x0 + t x1 is Gaussian with mean mu_t = (1 - t) m and variance
    var_t = (1 - t)^2 s^2 + t^2; u = x1 - x0 is jointly Gaussian with it, so

        v(x, t) = E[x1 - x0 | x_t = x] = -m + Cov(u, x_t) / var_t (x - mu_t),  Cov(u, x_t) = t - (1 - t) s^2.

    Its flow keeps the standard score z = (x - mu_t) / sqrt(var_t): noise z at t = 1 lands on m + s z at t = 0.
    """

    def __init__(self, m: torch.Tensor, s: float):
        super().__init__()
        self.m, self.s, self.n_in = m, s, len(m)

    def forward(self, x, t, codes=None):
        t = t.reshape(-1, 1).to(x.dtype)
        var = (1 - t) ** 2 * self.s ** 2 + t ** 2
        return -self.m + (t - (1 - t) * self.s ** 2) / var * (x - (1 - t) * self.m)


class ConstantVelocity(nn.Module):
    """v(x, t) = c everywhere: the exact velocity of pairs x1 = x0 + c, a straight flow."""

    def __init__(self, c: torch.Tensor):
        super().__init__()
        self.c, self.n_in = c, len(c)

    def forward(self, x, t, codes=None):
        return self.c.expand_as(x)


def gaussian_straightness(s: float) -> float:
    """S per unit E||z||^2 of the Gaussian flow above: (x1 - x0) - v = (1 - s - sigma'_t) z, with
    sigma_t = sqrt((1 - t)^2 s^2 + t^2), sigma'_t = (t - (1 - t) s^2) / sigma_t, so S = E||z||^2 int (...)^2 dt."""
    def integrand(t):
        return (1 - s - (t - (1 - t) * s ** 2) / np.sqrt((1 - t) ** 2 * s ** 2 + t ** 2)) ** 2
    return quad(integrand, 0.0, 1.0)[0]


# -- minibatch OT ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ot_pairing_is_the_optimal_assignment(seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(40, 5, generator=g) * 2 + 1, torch.randn(40, 5, generator=g)
    index = ot_pairing(x0, x1)
    cost = torch.cdist(x0.double(), x1.double()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    assert sorted(index.tolist()) == list(range(40))                           # a permutation
    np.testing.assert_allclose(cost[np.arange(40), index.numpy()].sum(), cost[rows, cols].sum(), rtol=1e-10)
    np.testing.assert_array_equal(index.numpy(), cols)                          # unique optimum (continuous data)
    assert cost[np.arange(40), index.numpy()].sum() <= np.trace(cost)           # <= the independent pairing


def test_ot_pairing_with_unequal_sizes_draws_pairs_from_the_plan():
    import ot

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(12, 3, generator=g), torch.randn(30, 3, generator=g)
    index = ot_pairing(x0, x1, generator=g)
    plan = ot.emd(ot.unif(12), ot.unif(30), torch.cdist(x0.double(), x1.double()).pow(2).numpy())
    assert index.shape == (12,)
    assert (plan[np.arange(12), index.numpy()] > 0).all()                      # each pair in the plan's support


def test_ot_coupling_in_the_loss_recovers_a_translation():
    """Source cells = the data shifted by c and shuffled: OT on squared cost undoes the shuffle, so the
    constant velocity c has zero CFM loss under "ot" and a large one under "independent"."""
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(64, 3, generator=g), torch.tensor([0.5, -1.0, 2.0])
    batch = {"x": x, "src": (x + c)[torch.randperm(64, generator=g)]}
    ot_loss = FlowMatching(ConstantVelocity(c), coupling="ot", source_key="src").loss(batch).loss
    independent = FlowMatching(ConstantVelocity(c), coupling="independent", source_key="src").loss(batch).loss
    assert float(ot_loss) < 1e-10
    assert float(independent) > 0.5


# -- the conditional path and its target -----------------------------------------------------------
def test_path_target_and_loss_match_torchcfm():
    """torchcfm's t is our 1 - t (its t = 0 is noise) and its u_t minus our velocity; the CFM loss of a
    t-dependent velocity field then equals torchcfm's mean((v(x_t, 1 - t_cfm) + u_t)^2)."""
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    g = torch.Generator().manual_seed(0)
    data, noise, t = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g), torch.rand(16, generator=g)
    model = FlowMatching(ConditionalMLP(4, 16, 1, 8))
    ours = model.path.sample(data, t, noise=noise)
    t_cfm, xt, ut = cfm.ConditionalFlowMatcher(sigma=0.0).sample_location_and_conditional_flow(noise, data, t=1 - t)
    torch.testing.assert_close(t_cfm, 1 - t)
    torch.testing.assert_close(ours.x_t, xt)
    torch.testing.assert_close(ours.velocity, -ut)

    def field(x, s):
        return torch.sin(3 * s)[:, None] * x + s[:, None]
    torch.testing.assert_close(cfm_loss(field, model.path, data, noise, t), (field(xt, 1 - t_cfm) + ut).pow(2).mean())


def test_given_pairs_enter_the_loss_as_given():
    """With pairs x1 = x0 + c the conditional velocity is c at every t: loss 0 for v = c and, for a network
    that outputs 0 (ConditionalMLP's zero-initialized output), exactly mean(c^2), whatever t is drawn."""
    x0, c = torch.randn(32, 3), torch.tensor([1.0, -2.0, 0.5])
    batch = {"x": x0, "x1": x0 + c}
    assert float(FlowMatching(ConstantVelocity(c), coupling="given").loss(batch).loss) < 1e-12
    out = FlowMatching(ConditionalMLP(3, 16, 1, 8), coupling="given").loss(batch)
    torch.testing.assert_close(out.loss, c.pow(2).mean().expand(()))
    assert set(out.terms) == {"mse"}


# -- sampling and straightness against the closed-form Gaussian flow -------------------------------
def test_sample_maps_noise_onto_the_gaussian():
    m, s = torch.tensor([2.0, -1.0]), 0.5
    model = FlowMatching(GaussianFlowVelocity(m, s))
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4000, 2, generator=g)
    x0 = model.sample(4000, nfe=100, method="heun", x1=x1)
    torch.testing.assert_close(x0, m + s * x1, atol=1e-3, rtol=0)                # the exact map, point by point
    torch.testing.assert_close(x0.mean(0), m, atol=0.05, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), s), atol=0.03, rtol=0)
    drawn = model.sample(4000, nfe=40, method="heun", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(drawn.mean(0), m, atol=0.05, rtol=0)


def test_straightness_of_the_independent_gaussian_flow_and_of_a_straight_flow():
    m, s = torch.tensor([2.0, -1.0]), 0.5
    x1 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    curved = straightness(GaussianFlowVelocity(m.double(), s), x1, nfe=400)
    expected = gaussian_straightness(s) * float(x1.pow(2).sum(-1).mean())
    assert curved > 0.01
    assert curved == pytest.approx(expected, rel=0.02)
    assert straightness(ConstantVelocity(m.double()), x1, nfe=10) < 1e-20


# -- training ---------------------------------------------------------------------------------------
def test_training_on_a_gaussian_reproduces_its_moments(one_thread):
    torch.manual_seed(0)
    m, s = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5])
    model = FlowMatching(ConditionalMLP(2, n_hidden=64, n_layers=2, time_dim=32), coupling="ot")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model.loss({"x": m + s * torch.randn(128, 2)}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = model.sample(4000, nfe=20, method="heun", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(0), m, atol=0.15, rtol=0)
    torch.testing.assert_close(x.std(0), s, atol=0, rtol=0.15)


# -- reflow -----------------------------------------------------------------------------------------
def test_reflow_pairs_hold_the_noise_that_generated_each_point():
    samplers = pytest.importorskip("genailab_core.samplers")
    model = FlowMatching(GaussianFlowVelocity(torch.tensor([1.0, 3.0]), 0.7))
    x0, x1 = model.reflow_pairs(200, method="dopri5", generator=torch.Generator().manual_seed(0))
    assert x0.shape == x1.shape == (200, 2)
    back = samplers.ode_solve(model.velocity, x0, 1, method="dopri5", t_start=0.0, t_end=1.0)
    torch.testing.assert_close(back, x1, atol=1e-3, rtol=0)
    assert float(FlowMatching(GaussianFlowVelocity(torch.zeros(2), 1.0), coupling="given")
                 .loss({"x": x0, "x1": x1}).loss) > 0                         # the batch keys a reflow model reads


# -- errors -----------------------------------------------------------------------------------------
def test_bad_input_raises():
    from genailab_core.metrics import compare_to_real

    model = FlowMatching(ConditionalMLP(3, 16, 1, 8))
    with pytest.raises(ValueError, match="function evaluations"):
        model.sample(10, nfe=0)
    with pytest.raises(ValueError, match="function evaluations"):
        straightness(model.velocity, torch.randn(10, 3), nfe=0)
    with pytest.raises(ValueError, match="Unknown coupling"):
        FlowMatching(ConditionalMLP(3, 16, 1, 8), coupling="sinkhorn")
    with pytest.raises(ValueError, match=r"batch\['x1'\]"):
        FlowMatching(ConditionalMLP(3, 16, 1, 8), coupling="given").loss({"x": torch.randn(8, 3)})
    conditional = FlowMatching(ConditionalMLP(3, 16, 1, 8, n_categories=[2]), condition_keys=("cell_type",))
    with pytest.raises(ValueError, match="batch has no condition"):
        conditional.loss({"x": torch.randn(8, 3)})
    with pytest.raises(ValueError, match="pass codes"):
        conditional.sample(10)
    assert conditional.sample(10, nfe=2, codes=torch.ones(10, 1, dtype=torch.long)).shape == (10, 3)
    with pytest.raises(ValueError, match="same features"):
        compare_to_real(np.random.rand(50, 3), np.random.rand(50, 4))


def test_classifier_free_guidance_of_the_velocity_is_exact_at_scales_one_and_zero():
    torch.manual_seed(0)
    net = ConditionalMLP(4, n_hidden=16, n_layers=1, n_categories=[3])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model = FlowMatching(net, condition_keys=["kind"], p_uncond=0.2)
    x, t, codes = torch.randn(5, 4), torch.rand(5), torch.tensor([[0], [1], [2], [0], [1]])
    assert torch.equal(model.velocity(x, t, codes, guidance_scale=1.0), net(x, t, codes))
    assert torch.equal(model.velocity(x, t, codes, guidance_scale=0.0), net(x, t, torch.full_like(codes, -1)))
    mixed = model.velocity(x, t, codes, guidance_scale=2.5)
    torch.testing.assert_close(mixed, net(x, t, torch.full_like(codes, -1))
                               + 2.5 * (net(x, t, codes) - net(x, t, torch.full_like(codes, -1))))
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        model.sample(5, nfe=2, codes=codes, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="needs condition_keys|has none"):
        FlowMatching(ConditionalMLP(4), p_uncond=0.1)


def test_the_flow_drops_conditions_at_rate_p_uncond_in_training_only():
    from genailab_core.models.tensors import drop_conditions
    torch.manual_seed(0)
    codes = torch.zeros(20000, 2, dtype=torch.long)
    dropped = drop_conditions(codes, 0.3)
    assert (dropped == -1).all(1).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert ((dropped == -1).any(1) == (dropped == -1).all(1)).all()        # all keys of a cell together
    seen = []
    net = ConditionalMLP(2, n_hidden=8, n_layers=1, n_categories=[2])
    forward = net.forward
    net.forward = lambda x, t, c: (seen.append(c.clone()), forward(x, t, c))[1]
    model = FlowMatching(net, condition_keys=["kind"], p_uncond=0.5)
    batch = {"x": torch.randn(4000, 2), "kind": torch.ones(4000, dtype=torch.long)}
    model.train(); model.loss(batch)
    model.eval(); model.loss(batch)
    assert (seen[0] == -1).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert not (seen[1] == -1).any()
