"""Samplers against closed forms: with the exact score of a Gaussian N(m, S), or of a 1-D two-component mixture,
every marginal q_t is known, so a sampler's output can be compared with the data distribution itself."""
from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from genailab_core import samplers
from genailab_core.schedules import VE, LinearPath, VPCosine, VPLinear

pytestmark = pytest.mark.usefixtures("one_thread")          # small tensors: threads only contend on a shared CPU

F64 = torch.float64
MEAN = torch.tensor([1.0, -2.0], dtype=F64)                 # the data Gaussian N(m, S), 2-D, correlated
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
EYE = torch.eye(2, dtype=F64)


# -- closed forms -------------------------------------------------------------------------------------------------
def gaussian_marginal(schedule, t):
    """q_t = N(alpha_t m, alpha_t^2 S + sigma_t^2 I) for the data N(m, S): mean (2,), covariance (2, 2)."""
    t = torch.as_tensor(t, dtype=F64)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    return alpha * MEAN, alpha ** 2 * COV + sigma ** 2 * EYE


def gaussian_score(schedule):
    """grad log q_t(x) = -Sigma_t^{-1} (x - alpha_t m); x: (B, 2), t: (B,) -> (B, 2)."""
    def score(x, t):
        alpha = schedule.alpha(t).expand(len(x))[:, None, None]
        sigma = schedule.sigma(t).expand(len(x))[:, None, None]
        covariance = alpha ** 2 * COV + sigma ** 2 * EYE                      # (B, 2, 2)
        centred = (x - alpha[:, :, 0] * MEAN).unsqueeze(-1)
        return -torch.linalg.solve(covariance, centred).squeeze(-1)
    return score


def gaussian_eps(schedule):
    """The noise prediction E[eps | x_t] = -sigma_t score(x_t, t)."""
    score = gaussian_score(schedule)
    return lambda x, t: -schedule.sigma(t).expand(len(x))[:, None] * score(x, t)


def whitened_draws(n, mean, cov, seed):
    """n draws whose sample mean and covariance are exactly (mean, cov): a deterministic sampler's output moments
    then carry its discretization error only, no Monte-Carlo error. (n, 2)."""
    z = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))
    z = z - z.mean(0)
    z = torch.linalg.solve_triangular(torch.linalg.cholesky(torch.cov(z.T)), z.T, upper=False).T
    return mean + z @ torch.linalg.cholesky(cov).T


def assert_moments(x, mean, cov, atol_mean, atol_cov):
    torch.testing.assert_close(x.mean(0), mean, atol=atol_mean, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=atol_cov, rtol=0)


MIX_WEIGHT = torch.tensor([0.3, 0.7], dtype=F64)            # 1-D mixture 0.3 N(-2, 0.4^2) + 0.7 N(1.5, 0.6^2)
MIX_MEAN = torch.tensor([-2.0, 1.5], dtype=F64)
MIX_SD = torch.tensor([0.4, 0.6], dtype=F64)


def mixture_score(schedule):
    """Exact score of q_t = sum_k w_k N(alpha_t mu_k, alpha_t^2 s_k^2 + sigma_t^2): responsibilities times the
    components' scores. x: (B, 1), t: (B,) -> (B, 1)."""
    def score(x, t):
        alpha, sigma = schedule.alpha(t).expand(len(x))[:, None], schedule.sigma(t).expand(len(x))[:, None]
        var = alpha ** 2 * MIX_SD ** 2 + sigma ** 2                             # (B, K)
        residual = x - alpha * MIX_MEAN
        log_joint = torch.log(MIX_WEIGHT) - 0.5 * residual ** 2 / var - 0.5 * torch.log(var)
        return (torch.softmax(log_joint, 1) * (-residual / var)).sum(1, keepdim=True)
    return score


def moment_matched_score(schedule):
    """The wrong score: a single Gaussian with the mixture's mean and variance."""
    mean = float((MIX_WEIGHT * MIX_MEAN).sum())
    var = float((MIX_WEIGHT * (MIX_SD ** 2 + MIX_MEAN ** 2)).sum()) - mean ** 2
    def score(x, t):
        alpha, sigma = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        return -(x - alpha * mean) / (alpha ** 2 * var + sigma ** 2)
    return score


def mixture_draws(schedule, t, n, seed):
    """Exact draws of the mixture's q_t: (n,)."""
    generator = torch.Generator().manual_seed(seed)
    k = torch.multinomial(MIX_WEIGHT, n, replacement=True, generator=generator)
    x0 = MIX_MEAN[k] + MIX_SD[k] * torch.randn(n, dtype=F64, generator=generator)
    t = torch.tensor(t, dtype=F64)
    return schedule.alpha(t) * x0 + schedule.sigma(t) * torch.randn(n, dtype=F64, generator=generator)


SCHEDULES = [VPLinear(), VPCosine(), LinearPath(), VE(sigma_min=0.01, sigma_max=5.0)]
IDS = ["vp_linear", "vp_cosine", "linear_path", "ve"]


# -- DDIM and ancestral ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_ddim_maps_the_prior_onto_the_data_gaussian(schedule):
    """DDIM (eta = 0) from the exact q_1 (whitened draws; N(0, I) where alpha_1 = 0: LinearPath and VPCosine,
    which exercise the alpha_t = 0 first step) reaches q_0 = N(m, S) (+ sigma_0^2 I for VE) within 1e-2."""
    x1 = whitened_draws(2000, *gaussian_marginal(schedule, 1.0), seed=0)
    x0 = samplers.ddim(gaussian_eps(schedule), schedule, x1, nfe=500)
    assert_moments(x0, *gaussian_marginal(schedule, 0.0), atol_mean=1e-2, atol_cov=1e-2)


@pytest.mark.parametrize("schedule", [VPCosine(), LinearPath()], ids=["vp_cosine", "linear_path"])
def test_ddim_first_step_from_alpha_zero_predicts_x0(schedule):
    """Where alpha_1 = 0 the first step takes x0_hat = E[x_0 | x_s = x_1] from the predictor at s: with only
    20 steps the output mean is still within 5e-4 of m (x0_hat = 0, the noise's own guess, misses by ~alpha_s m)."""
    x1 = whitened_draws(2000, *gaussian_marginal(schedule, 1.0), seed=0)
    x0 = samplers.ddim(gaussian_eps(schedule), schedule, x1, nfe=20)
    torch.testing.assert_close(x0.mean(0), MEAN, atol=5e-4, rtol=0)


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("schedule", [VPLinear(), LinearPath()], ids=["vp_linear", "linear_path"])
def test_stochastic_ddim_and_ancestral_keep_the_marginals(schedule, eta):
    """eta > 0 draws fresh noise each step but must still land on q_0 (discretization ~0.02 at 200 steps, plus
    Monte-Carlo error ~0.01 for 20,000 draws). The prior and the sampler use different seeds."""
    x1 = whitened_draws(20_000, *gaussian_marginal(schedule, 1.0), seed=1)
    generator = torch.Generator().manual_seed(2)
    if eta == 1.0:
        x0 = samplers.ancestral(gaussian_eps(schedule), schedule, x1, nfe=200, generator=generator)
    else:
        x0 = samplers.ddim(gaussian_eps(schedule), schedule, x1, nfe=200, eta=eta, generator=generator)
    assert_moments(x0, *gaussian_marginal(schedule, 0.0), atol_mean=0.03, atol_cov=0.06)


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_equals_diffusers(eta):
    """ddim_step with alpha = sqrt(alphabar), sigma = sqrt(1 - alphabar) is diffusers' DDIMScheduler.step at every
    timestep of a 50-step schedule, the last one (to alphabar = 1) included, with the same noise."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                        set_alpha_to_one=True)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(3)
    alphabar = scheduler.alphas_cumprod
    for t in scheduler.timesteps.tolist():
        x_t, eps_hat, noise = (torch.randn(16, 5, generator=generator) for _ in range(3))
        prev = t - 1000 // 50
        alphabar_s = alphabar[prev] if prev >= 0 else scheduler.final_alpha_cumprod
        ours = samplers.ddim_step(x_t, eps_hat, alphabar[t].sqrt(), (1 - alphabar[t]).sqrt(), alphabar_s.sqrt(),
                                  (1 - alphabar_s).sqrt(), eta=eta, noise=noise)
        reference = scheduler.step(eps_hat, t, x_t, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


# -- ODEs ---------------------------------------------------------------------------------------------------------
def test_euler_is_first_order_and_heun_second_order():
    """dx/dt = (1 + t) x from t = 1 to 0 has x(0) = x(1) exp(-3/2). Doubling the steps divides the error by ~2
    (Euler) and ~4 (Heun); dopri5 is accurate to its tolerance."""
    x1 = torch.tensor([[1.0], [-2.0]], dtype=F64)
    exact = x1 * math.exp(-1.5)
    velocity = lambda x, t: (1 + t)[:, None] * x                                # noqa: E731
    for method, order in (("euler", 1), ("heun", 2)):
        errors = [float((samplers.ode_solve(velocity, x1, nfe, method=method) - exact).abs().max())
                  for nfe in (16, 32, 64)]
        for coarse, fine in zip(errors[:-1], errors[1:]):
            assert coarse / fine == pytest.approx(2 ** order, rel=0.1), (method, errors)
    adaptive = samplers.ode_solve(velocity, x1, 1, method="dopri5", rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(adaptive, exact, atol=1e-6, rtol=0)
    back = samplers.ode_solve(velocity, adaptive, 1, method="dopri5", t_start=0.0, t_end=1.0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(back, x1, atol=1e-6, rtol=0)                     # forward in time too


def test_probability_flow_transports_q1_onto_the_data_gaussian():
    """The PF-ODE velocity f - g^2 score / 2 (Song et al. 2021, eq. 13) carries the exact q_1 onto q_0: with
    dopri5 and whitened draws, to 1e-3 (a missing 1/2 or a wrong sign moves the moments by O(1))."""
    schedule = VPLinear()
    x1 = whitened_draws(500, *gaussian_marginal(schedule, 1.0), seed=4)
    velocity = samplers.probability_flow(gaussian_score(schedule), schedule)
    x0 = samplers.ode_solve(velocity, x1, 1, method="dopri5", t_end=1e-4)
    assert_moments(x0, *gaussian_marginal(schedule, 1e-4), atol_mean=1e-3, atol_cov=1e-3)


# -- likelihood ------------------------------------------------------------------------------------------------------
def test_pf_ode_log_likelihood_equals_the_gaussian_log_density():
    """log p_0(x) by the instantaneous change of variables (exact divergence, prior the exact q_1) equals
    scipy's multivariate normal log-density to 1e-3; nfe is the number of velocity calls."""
    schedule = VPLinear()
    x0 = whitened_draws(16, MEAN, COV, seed=5)
    prior = torch.distributions.MultivariateNormal(*gaussian_marginal(schedule, 1.0))
    pf_velocity = samplers.probability_flow(gaussian_score(schedule), schedule)
    calls = []
    def velocity(x, t):
        calls.append(1)
        return pf_velocity(x, t)
    log_p, nfe = samplers.pf_ode_log_likelihood(velocity, x0, prior.log_prob)
    reference = scipy.stats.multivariate_normal(MEAN.numpy(), COV.numpy()).logpdf(x0.numpy())
    torch.testing.assert_close(log_p, torch.as_tensor(reference), atol=1e-3, rtol=0)
    assert nfe == len(calls) > 0


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_log_likelihood_is_unbiased(probe):
    """Hutchinson's divergence (one probe per point, fixed for the solve) gives log p with zero-mean noise: the
    mean error over 400 points is within 4 standard errors of 0, the noise is real, and 16 probes cut it ~4x."""
    schedule = VPLinear()
    x0 = whitened_draws(400, MEAN, COV, seed=6)
    prior = torch.distributions.MultivariateNormal(*gaussian_marginal(schedule, 1.0))
    velocity = samplers.probability_flow(gaussian_score(schedule), schedule)
    exact, _ = samplers.pf_ode_log_likelihood(velocity, x0, prior.log_prob, rtol=1e-4, atol=1e-4)
    spread = []
    for n_probes, seed in ((1, 7), (16, 8)):
        estimate, _ = samplers.pf_ode_log_likelihood(velocity, x0, prior.log_prob, divergence="hutchinson",
                                                     n_probes=n_probes, probe=probe, rtol=1e-4, atol=1e-4,
                                                     generator=torch.Generator().manual_seed(seed))
        error = estimate - exact
        assert abs(float(error.mean())) < 4 * float(error.std()) / math.sqrt(len(error))
        spread.append(float(error.std()))
    assert spread[0] > 0.1
    assert 2.5 < spread[0] / spread[1] < 6.5


# -- stochastic samplers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["reverse_sde", "predictor_corrector"])
def test_stochastic_samplers_reproduce_a_gaussian_mixture(sampler):
    """With the exact mixture score a two-sample KS test against exact draws does not reject; with the score of
    one Gaussian of the same mean and variance, the same test rejects."""
    schedule, n = VPLinear(), 2000
    reference = mixture_draws(schedule, 1e-3, n, seed=9).numpy()
    p_values = []
    for score in (mixture_score(schedule), moment_matched_score(schedule)):
        generator = torch.Generator().manual_seed(10)
        x1 = schedule.prior(n, 1, generator=generator).to(F64)
        if sampler == "reverse_sde":
            x0 = samplers.reverse_sde(score, schedule, x1, nfe=500, generator=generator)
        else:
            x0 = samplers.predictor_corrector(score, schedule, x1, nfe=1000, n_corrector=1, generator=generator)
        p_values.append(scipy.stats.ks_2samp(x0[:, 0].numpy(), reference).pvalue)
    assert p_values[0] > 0.05, p_values
    assert p_values[1] < 1e-6, p_values


def test_annealed_langevin_reaches_the_gaussian_moments():
    """Song & Ermon's annealed Langevin with the exact VE score of N(m, S), from the prior N(0, sigma_max^2 I),
    ends at q_{t_min} = N(m, S + sigma_min^2 I) (mean within 5 s.e.; covariance within 0.06: Monte Carlo ~0.015
    plus the scheme's own bias, ~0.02 at these steps)."""
    schedule = VE(sigma_min=0.01, sigma_max=10.0)
    generator = torch.Generator().manual_seed(11)
    x = schedule.prior(10_000, 2, generator=generator).to(F64)
    x = samplers.annealed_langevin(gaussian_score(schedule), schedule, x, n_levels=10, steps_per_level=100,
                                   step_size=1e-4, generator=generator)
    assert_moments(x, *gaussian_marginal(schedule, 0.0), atol_mean=0.05, atol_cov=0.06)


# -- errors ---------------------------------------------------------------------------------------------------------
def test_bad_input_raises():
    schedule, x = VPLinear(), torch.zeros(4, 2)
    eps, score = gaussian_eps(schedule), gaussian_score(schedule)
    velocity = lambda x, t: -x                                                  # noqa: E731
    with pytest.raises(ValueError, match="number of function evaluations must be >= 1"):
        samplers.ode_solve(velocity, x, 0)
    with pytest.raises(ValueError, match="number of function evaluations must be >= 2 for 'heun'"):
        samplers.ode_solve(velocity, x, 1, method="heun")
    with pytest.raises(ValueError, match="Unknown ODE method 'rk45'"):
        samplers.ode_solve(velocity, x, 4, method="rk45")
    with pytest.raises(ValueError, match="must differ"):
        samplers.ode_solve(velocity, x, 4, t_start=0.5, t_end=0.5)
    with pytest.raises(ValueError, match="number of function evaluations must be >= 1"):
        samplers.ddim(eps, schedule, x, 0)
    with pytest.raises(ValueError, match="eta must be in"):
        samplers.ddim(eps, schedule, x, 10, eta=-0.1)
    with pytest.raises(ValueError, match="need 0 <= t_end < t_start <= 1"):
        samplers.ddim(eps, schedule, x, 10, t_start=0.2, t_end=0.5)
    with pytest.raises(ValueError, match="needs noise"):
        samplers.ddim_step(x, x, 0.5, 0.8, 0.9, 0.4, eta=0.5)
    with pytest.raises(ValueError, match="alpha_t > 0"):
        samplers.ddim_step(x, x, 0.0, 1.0, 0.9, 0.4)
    with pytest.raises(ValueError, match="need 0 <= t_end < t_start <= 1"):
        samplers.reverse_sde(score, schedule, x, 10, t_start=1e-3, t_end=1e-3)
    with pytest.raises(ValueError, match="alpha_t = 0 at t_start=1.0"):
        samplers.reverse_sde(score, LinearPath(), x, 10)
    with pytest.raises(ValueError, match=r">= 3 \(1 \+ n_corrector=2 per step\)"):
        samplers.predictor_corrector(score, schedule, x, 2, n_corrector=2)
    with pytest.raises(ValueError, match="snr must be > 0"):
        samplers.predictor_corrector(score, schedule, x, 10, snr=0.0)
    with pytest.raises(ValueError, match="n_levels and steps_per_level must be >= 1"):
        samplers.annealed_langevin(score, VE(), x, 0, 10, 1e-4)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        samplers.annealed_langevin(score, VE(), x, 5, 10, 0.0)
    prior = lambda x: torch.zeros(len(x))                                       # noqa: E731
    with pytest.raises(ValueError, match="Unknown divergence 'trace'"):
        samplers.pf_ode_log_likelihood(velocity, x, prior, divergence="trace")
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        samplers.pf_ode_log_likelihood(velocity, x, prior, divergence="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="Unknown probe 'sphere'"):
        samplers.pf_ode_log_likelihood(velocity, x, prior, divergence="hutchinson", probe="sphere")
    with pytest.raises(ValueError, match="t_end must be in"):
        samplers.pf_ode_log_likelihood(velocity, x, prior, t_end=0.0)
    with pytest.raises(ValueError, match="for the likelihood"):
        samplers.pf_ode_log_likelihood(velocity, x, prior, method="euler")
    with pytest.raises(ValueError, match="prior_log_prob must map"):
        samplers.pf_ode_log_likelihood(velocity, x, lambda x: torch.zeros(len(x), 1))


@pytest.mark.parametrize("t_start, t_end", [(0.999, 1e-3), (1e-3, 0.999)])
def test_adaptive_solvers_never_evaluate_the_velocity_outside_the_interval(t_start, t_end):
    """dopri5 takes large steps on a smooth field; its last step must land on t_end, not overshoot past it and
    evaluate there (a VP schedule's sigma_t is 0 beyond t = 0 and the PF-ODE velocity NaN)."""
    times = []

    def velocity(x, t):
        times.append(t.min().item())
        times.append(t.max().item())
        return -x

    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    samplers.ode_solve(velocity, x, 1, method="dopri5", t_start=t_start, t_end=t_end, rtol=1e-3, atol=1e-3)
    lo, hi = min(t_start, t_end), max(t_start, t_end)
    assert lo - 1e-6 <= min(times) and max(times) <= hi + 1e-6

    times.clear()
    samplers.pf_ode_log_likelihood(velocity, x, lambda z: torch.zeros(len(z)), t_end=t_end if t_end > t_start else
                                   t_start, rtol=1e-3, atol=1e-3)
    assert 0.0 - 1e-6 <= min(times) and max(times) <= max(t_start, t_end) + 1e-6
