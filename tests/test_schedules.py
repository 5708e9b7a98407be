"""Schedules: the path's marginals q(x_t | x_0), the closed-form derivatives, the forward SDE, DDPM's betas."""
from __future__ import annotations

import math

import pytest
import torch

from genailab_core.schedules import VE, LinearPath, VPCosine, VPLinear, ddpm_betas

SCHEDULES = [VPLinear(), VPCosine(), VE(sigma_min=0.01, sigma_max=5.0), LinearPath()]
IDS = ["vp_linear", "vp_cosine", "ve", "linear_path"]
pytestmark = pytest.mark.usefixtures("one_thread")          # small tensors: threads only contend on a shared CPU


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_sample_has_the_moments_of_q_xt_given_x0(schedule):
    """x_t = alpha_t x_0 + sigma_t eps: with x_0 fixed, the draws' mean is alpha_t x_0 and their variance sigma_t^2."""
    n, x0 = 40_000, torch.tensor([1.5, -0.5], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for t_value in (0.2, 0.7):
        t = torch.full((n,), t_value, dtype=torch.float64)
        draw = schedule.sample(x0.expand(n, 2), t, noise=torch.randn(n, 2, dtype=torch.float64, generator=generator))
        alpha, sigma = float(schedule.alpha(torch.tensor(t_value))), float(schedule.sigma(torch.tensor(t_value)))
        mean_se = sigma / math.sqrt(n)
        torch.testing.assert_close(draw.x_t.mean(0), alpha * x0, atol=5 * mean_se, rtol=0)
        var = draw.x_t.var(0)
        torch.testing.assert_close(var, torch.full_like(var, sigma ** 2), atol=0, rtol=5 * math.sqrt(2 / n))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_velocity_is_the_time_derivative_of_x_t(schedule):
    """PathSample.velocity = d x_t / dt at fixed (x_0, eps): compare with a central finite difference."""
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 3, dtype=torch.float64, generator=generator)
    noise = torch.randn(8, 3, dtype=torch.float64, generator=generator)
    t = torch.linspace(0.05, 0.95, 8, dtype=torch.float64)
    h = 1e-6
    forward, backward = schedule.sample(x0, t + h, noise), schedule.sample(x0, t - h, noise)
    finite_difference = (forward.x_t - backward.x_t) / (2 * h)
    torch.testing.assert_close(schedule.sample(x0, t, noise).velocity, finite_difference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_closed_form_derivatives_match_autograd(schedule):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64, requires_grad=True)
    for value, derivative in ((schedule.alpha, schedule.d_alpha), (schedule.sigma, schedule.d_sigma)):
        out = value(t)
        autograd = torch.autograd.grad(out.sum(), t)[0] if out.requires_grad else torch.zeros_like(t)   # VE's alpha = 1
        torch.testing.assert_close(derivative(t.detach()).expand(50), autograd, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_log_snr_is_log_alpha2_over_sigma2_and_falls(schedule):
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t).expand(19), schedule.sigma(t)
    torch.testing.assert_close(schedule.log_snr(t).expand(19), torch.log(alpha ** 2 / sigma ** 2))
    assert bool((schedule.log_snr(t).diff() < 0).all())


def test_vp_linear_diffusion_is_beta_including_t_zero():
    """For the VP SDE g(t)^2 = beta(t) and f = -beta(t) x / 2 (Song et al. 2021, eq. 11), also at t = 0 where
    sigma_0 = 0 and d sigma / dt is infinite (the PF-ODE likelihood integrates from there)."""
    schedule = VPLinear()
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    x = torch.ones(3, 2, dtype=torch.float64)
    f, g = schedule.sde(x, t)
    torch.testing.assert_close(g ** 2, schedule.beta(t))
    torch.testing.assert_close(f, -0.5 * schedule.beta(t)[:, None] * x)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_forward_sde_reproduces_the_path_marginal(schedule):
    """Euler-Maruyama of dx = f dt + g dW from a point mass at t = 0 reaches, at t = 1/2, the transition
    N((alpha_t / alpha_0) x_0, sigma_t^2 - (alpha_t / alpha_0)^2 sigma_0^2): f and g are checked apart from the
    closed form of q(x_t | x_0)."""
    n, n_steps, t_end = 20_000, 400, 0.5
    generator = torch.Generator().manual_seed(2)
    x0 = 1.5
    x = torch.full((n, 1), x0, dtype=torch.float64)
    times = torch.linspace(0.0, t_end, n_steps + 1, dtype=torch.float64)
    for t, s in zip(times[:-1], times[1:]):
        f, g = schedule.sde(x, t.expand(n))
        dw = torch.sqrt(s - t) * torch.randn(n, 1, dtype=torch.float64, generator=generator)
        x = x + f * (s - t) + g[:, None] * dw
    a0, s0 = float(schedule.alpha(times[0])), float(schedule.sigma(times[0]))
    a, s = float(schedule.alpha(times[-1])), float(schedule.sigma(times[-1]))
    mean, var = a / a0 * x0, s ** 2 - (a / a0) ** 2 * s0 ** 2
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n) + 2e-3
    assert abs(float(x.var()) / var - 1) < 5 * math.sqrt(2 / n) + 1e-2


def test_discrete_betas_equal_diffusers():
    """DDPM's betas and alphas_cumprod: "linear" 1e-4 .. 0.02 and the cosine "squaredcos_cap_v2" of diffusers."""
    diffusers = pytest.importorskip("diffusers")
    for schedule, name in ((VPLinear(), "linear"), (VPCosine(), "squaredcos_cap_v2")):
        reference = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, beta_start=1e-4,
                                            beta_end=0.02)
        betas = ddpm_betas(schedule, 1000)
        assert betas.shape == (1000,) and betas.dtype == torch.float64
        torch.testing.assert_close(betas, reference.betas.double(), atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.cumprod(1 - betas, 0), reference.alphas_cumprod.double(), atol=1e-6, rtol=0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="beta_min"):
        VPLinear(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="sigma_min"):
        VE(sigma_min=0.0)
    with pytest.raises(ValueError, match="offset"):
        VPCosine(s=0.0)
    with pytest.raises(ValueError, match="n_steps"):
        ddpm_betas(VPLinear(), 0)
    with pytest.raises(TypeError, match="no discrete DDPM betas"):
        ddpm_betas(LinearPath(), 10)
