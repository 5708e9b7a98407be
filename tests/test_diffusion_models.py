"""Diffusion, score and guidance models against the closed forms of Gaussian data.

For data N(m, S) every quantity of a Gaussian path x_t = alpha x0 + sigma eps is known: x_t ~ N(alpha m, C_t)
with C_t = alpha^2 S + sigma^2 I, score -C_t^{-1}(x - alpha m), E[x0 | x_t] = m + alpha S C_t^{-1}(x - alpha m)
(Tweedie), and the posterior covariances give each parameterization's minimum loss.
"""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn
from torch.nn import functional as F

from genailab_core import samplers
from genailab_core.models.diffusion import Diffusion
from genailab_core.models.guidance import NoiseAwareClassifier, TimeConditionalClassifier, classifier_guided_score
from genailab_core.models.score import ScoreModel, dsm_loss, ism_loss, ssm_loss
from genailab_core.nn import ConditionalMLP
from genailab_core.schedules import VE, LinearPath, VPCosine, VPLinear
from genailab_core.train import fit

M = torch.tensor([1.0, -0.5], dtype=torch.float64)
S = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
I2 = torch.eye(2, dtype=torch.float64)
EIGENVALUES, EIGENVECTORS = torch.linalg.eigh(S)


def solve_noised(alpha, sigma, y):
    """(alpha^2 S + sigma^2 I)^{-1} y in the eigenbasis of S; alpha, sigma: (B, 1), y: (B, 2)."""
    return ((y @ EIGENVECTORS) / (alpha ** 2 * EIGENVALUES + sigma ** 2)) @ EIGENVECTORS.T


def gaussian(n, cov=S, mean=M, seed=0):
    """n draws of N(mean, cov): (n, 2) float64."""
    g = torch.Generator().manual_seed(seed)
    return mean + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T


def analytic_score(cov, mean=M):
    """y -> grad log N(y; mean, cov) = -cov^{-1} (y - mean)."""
    precision = torch.linalg.inv(cov)
    return lambda y: -(y - mean) @ precision


# -- score matching objectives: closed-form minima ------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_dsm_at_the_true_score_equals_its_closed_form_minimum_and_a_wrong_score_pays_its_distance(sigma):
    """With lambda = sigma^2, min DSM = 1/2 tr(S (S + sigma^2 I)^{-1}) = d/2 - sigma^2/2 tr(C^{-1}) (derived in the
    eigenbasis of S: each eigenvalue l gives (sigma^2 l + l^2) / (l + sigma^2)^2 = l / (l + sigma^2)); a shifted score
    s* + delta costs sigma^2/2 ||delta||^2 more (Vincent 2011: DSM = sigma^2/2 E||s - s*||^2 + const)."""
    n = 200_000
    C = S + sigma ** 2 * I2
    x0, z = gaussian(n, seed=1), torch.randn(n, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    true = analytic_score(C)
    minimum = 0.5 * torch.trace(S @ torch.linalg.inv(C))
    assert torch.isclose(minimum, 1.0 - 0.5 * sigma ** 2 * torch.trace(torch.linalg.inv(C)))       # same formula
    at_true = dsm_loss(true, x0, torch.tensor(sigma), z).mean()
    assert abs(at_true / minimum - 1) < 0.01
    delta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    shifted = dsm_loss(lambda y: true(y) + delta, x0, torch.tensor(sigma), z).mean()
    assert abs((shifted - at_true) / (0.5 * sigma ** 2 * delta.square().sum()) - 1) < 0.05
    assert dsm_loss(lambda y: 1.2 * true(y), x0, torch.tensor(sigma), z).mean() > at_true


def test_ism_and_ssm_at_the_true_score_equal_minus_half_trace_of_the_precision_and_dsm_is_d_over_2_above():
    """On y ~ N(m, C): tr grad s* = -tr C^{-1} and E 1/2||s*||^2 = 1/2 tr C^{-1}, so ISM = SSM = -1/2 tr C^{-1};
    a scaled score a s* gives (-a + a^2 / 2) tr C^{-1} (minimal at a = 1). sigma^2 ISM + d/2 = DSM (Vincent 2011)."""
    n, sigma = 50_000, 0.7
    C = S + sigma ** 2 * I2
    y, true, trace_precision = gaussian(n, C, seed=3), analytic_score(C), torch.trace(torch.linalg.inv(C))
    g = torch.Generator().manual_seed(4)
    ism, ssm = ism_loss(true, y).mean(), ssm_loss(true, y, n_projections=2, generator=g).mean()
    assert abs(ism / (-0.5 * trace_precision) - 1) < 0.02
    assert abs(ssm / (-0.5 * trace_precision) - 1) < 0.03
    for a in (0.7, 1.3):
        wrong = lambda x: a * true(x)  # noqa: E731
        assert abs(ism_loss(wrong, y).mean() / ((-a + a * a / 2) * trace_precision) - 1) < 0.02
        assert ism_loss(wrong, y).mean() > ism and ssm_loss(wrong, y, 2, g).mean() > ssm
    x0, z = gaussian(n, seed=5), torch.randn(n, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    dsm = dsm_loss(true, x0, torch.tensor(sigma), z).mean()
    assert abs(dsm - (sigma ** 2 * ism + 1.0)) < 0.02                                        # d/2 = 1


def test_ism_refuses_high_dimension():
    with pytest.raises(ValueError, match="Jacobian trace"):
        ism_loss(lambda x: -x, torch.randn(4, 65))
    with pytest.raises(ValueError, match="Jacobian trace"):
        ScoreModel(ConditionalMLP(65, 8, 1, 8), VE(0.1, 3.0), objective="ism")
    with pytest.raises(ValueError, match="VE schedule"):
        ScoreModel(ConditionalMLP(2, 8, 1, 8), VPLinear())


class LevelwiseLinear(nn.Module):
    """network(x, t) = x A_l' + b_l at the noise level l nearest t (of n_levels on [0, 1]): the exact family of
    sigma * Gaussian scores."""

    def __init__(self, n_levels, d=2):
        super().__init__()
        self.n_in, self.n_levels = d, n_levels
        self.A, self.b = nn.Parameter(torch.zeros(n_levels, d, d)), nn.Parameter(torch.zeros(n_levels, d))

    def forward(self, x, t, codes=None):
        level = torch.round(t * (self.n_levels - 1)).long()
        return torch.einsum("bij,bj->bi", self.A[level], x) + self.b[level]


@pytest.mark.parametrize("objective", ["dsm", "ssm", "ism"])
def test_score_model_learns_the_score_of_noised_gaussian_data_at_each_level(objective):
    """Trained on N(m, S) at NCSN's 3 levels, s_theta(., sigma) ~ -(S + sigma^2 I)^{-1}(x - m) (relative error < 5%)."""
    torch.manual_seed(0)
    schedule, steps, size = VE(0.3, 2.0), 250, 1024
    model = ScoreModel(LevelwiseLinear(3), schedule, objective=objective, n_levels=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)   # averages out the noise
    data = gaussian(steps * size, seed=10).float()
    for step in range(steps):
        optimizer.zero_grad()
        model.loss({"x": data[step * size:(step + 1) * size]}).loss.backward()
        optimizer.step()
        decay.step()
    for t, sigma in zip((0.0, 0.5, 1.0), schedule.noise_levels(3).flip(0)):
        C = S + float(sigma) ** 2 * I2
        y = gaussian(2000, C, seed=99)
        with torch.no_grad():
            learned = model.score(y.float(), t).double()
            network = model.network(y.float(), torch.full((len(y),), t)).double()
        truth = analytic_score(C)(y)
        assert (learned - truth).norm() / truth.norm() < 0.05, (t, objective)
        assert (network - sigma * truth).norm() / (sigma * truth).norm() < 0.05           # it predicts sigma * score


class NoisedGaussianScore(nn.Module):
    """network(x, t) = sigma_t * grad log N(x; M, S + sigma_t^2 I): the exact sigma-scaled NCSN."""

    def __init__(self, schedule):
        super().__init__()
        self.n_in, self.schedule = 2, schedule

    def forward(self, x, t, codes=None):
        self.t = t
        sigma = self.schedule.sigma(t.double())[:, None]
        return (-sigma * solve_noised(torch.ones_like(sigma), sigma, x.double() - M)).float()


@pytest.mark.parametrize("objective", ["dsm", "ism", "ssm"])
def test_score_model_loss_at_the_true_score_is_the_mean_closed_form_minimum_over_levels(objective):
    """Per level: DSM = d/2 - sigma^2/2 tr C^{-1}; ISM = SSM = DSM - d/2 (sigma^2-weighted, Song & Ermon 2019 eq. 6)."""
    torch.manual_seed(2)
    schedule = VE(0.3, 2.0)
    network = NoisedGaussianScore(schedule)
    model = ScoreModel(network, schedule, objective=objective, n_levels=4, n_projections=2)
    loss = model.loss({"x": gaussian(40_000, seed=12).float()}).loss
    sigma = schedule.sigma(network.t.double())
    torch.testing.assert_close(network.t.unique(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))     # NCSN's 4 levels
    trace_precision = (1 / torch.linalg.eigvalsh(S + sigma[:, None, None] ** 2 * I2)).sum(-1)
    expected = (1.0 if objective == "dsm" else 0.0) - 0.5 * sigma ** 2 * trace_precision
    assert abs(loss - expected.mean()) < 0.03 * abs(expected.mean())


# -- diffusion: the four views of a prediction, from an oracle network ---------------------------------------
class GaussianOracle(nn.Module):
    """The exact network for data N(M, S): eps_hat = sigma C^{-1}(x - alpha m), x0_hat = Tweedie's mean,
    v_hat = alpha eps_hat - sigma x0_hat; records the last t it saw."""

    def __init__(self, schedule, prediction):
        super().__init__()
        self.n_in, self.schedule, self.prediction = 2, schedule, prediction

    def forward(self, x, t, codes=None):
        self.t = t
        x, t = x.double(), t.double()
        alpha, sigma = self.schedule.alpha(t)[:, None], self.schedule.sigma(t)[:, None]
        centred = solve_noised(alpha, sigma, x - alpha * M)                                  # C^{-1}(x - alpha m)
        eps = sigma * centred
        x0 = M + alpha * centred @ S                                                       # S symmetric
        out = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[self.prediction]
        return out.to(torch.get_default_dtype())


@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine()], ids=["vp-linear", "vp-cosine"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_every_parameterization_gives_the_closed_form_eps_x0_score_and_velocity(prediction, schedule):
    model = Diffusion(GaussianOracle(schedule, prediction), schedule, prediction=prediction)
    x = gaussian(64, seed=7)
    t = torch.linspace(0.05, 0.95, 64, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    C = alpha[:, :, None] ** 2 * S + sigma[:, :, None] ** 2 * I2
    score = -torch.linalg.solve(C, (x - alpha * M)[..., None])[..., 0]
    f, g = schedule.sde(x, t)
    x32, t32 = x.float(), t.float()
    close = dict(rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(model.score(x32, t32).double(), score, **close)
    torch.testing.assert_close(model.eps(x32, t32).double(), -sigma * score, **close)
    torch.testing.assert_close(model.x0(x32, t32).double(), M + alpha * (-score) @ S, **close)
    torch.testing.assert_close(model.velocity(x32, t32).double(), f - 0.5 * g[:, None] ** 2 * score,   # eq. 13
                               **close)


@pytest.mark.parametrize("sampler,method", [("ddim", "euler"), ("ode", "heun"), ("sde", "euler"), ("pc", "euler")])
def test_sampling_the_oracle_recovers_the_data_mean_and_covariance(sampler, method):
    """2,000 draws in 100 evaluations: mean within 0.08 (3.5 s.e.), covariance within 0.12 (s.e. 0.03 + the
    samplers' discretization bias, < 0.04 at 20,000 draws)."""
    schedule = VPLinear()
    model = Diffusion(GaussianOracle(schedule, "v"), schedule, prediction="v")
    draws = model.sample(2000, sampler=sampler, nfe=100, method=method, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(draws.double().mean(0), M, atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(draws.double().T), S, atol=0.12, rtol=0)


def test_ancestral_is_ddim_with_eta_one_not_eta_zero():
    schedule = VPLinear()
    model = Diffusion(GaussianOracle(schedule, "eps"), schedule)
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    assert torch.equal(model.sample(8, "ancestral", nfe=5, generator=g(0)),
                       model.sample(8, "ddim", nfe=5, eta=1.0, generator=g(0)))
    assert not torch.equal(model.sample(8, "ancestral", nfe=5, generator=g(0)),
                           model.sample(8, "ddim", nfe=5, generator=g(0)))


def posterior_mse(schedule, prediction, t):
    """The minimum of E||target - f(x_t)||^2 / d per t: tr Cov(target | x_t) / d for Gaussian data.
    Cov(eps | x_t) = I - sigma^2 C^{-1}; x0 - x0_hat = -(sigma / alpha)(eps - eps_hat);
    v - v_hat = (eps - eps_hat) / alpha (alpha^2 + sigma^2 = 1)."""
    alpha, sigma = schedule.alpha(t.double()), schedule.sigma(t.double())
    C = alpha[:, None, None] ** 2 * S + sigma[:, None, None] ** 2 * I2
    eps_mse = torch.diagonal(I2 - sigma[:, None, None] ** 2 * torch.linalg.inv(C), dim1=1, dim2=2).sum(-1) / 2
    return {"eps": eps_mse, "x0": eps_mse * sigma ** 2 / alpha ** 2, "v": eps_mse / alpha ** 2}[prediction]


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_the_oracle_loss_is_the_posterior_variance_of_each_target(prediction):
    torch.manual_seed(1)
    schedule = VPLinear()
    oracle = GaussianOracle(schedule, prediction)
    model = Diffusion(oracle, schedule, prediction=prediction)
    loss = model.loss({"x": gaussian(40_000, seed=8).float()}).loss
    expected = posterior_mse(schedule, prediction, oracle.t).mean()
    assert 1e-3 <= oracle.t.min() and oracle.t.max() <= 1.0
    assert abs(loss / expected - 1) < 0.03


def test_v_prediction_needs_a_variance_preserving_schedule():
    for schedule in (VE(), LinearPath()):
        with pytest.raises(ValueError, match="variance-preserving"):
            Diffusion(ConditionalMLP(2, 8, 1, 8), schedule, prediction="v")


def test_v_target_and_its_x0_match_diffusers():
    """diffusers' DDPMScheduler.get_velocity and DDIMScheduler's v_prediction x0, at the continuous t with the same
    alphabar."""
    diffusers = pytest.importorskip("diffusers")
    schedule, k = VPLinear(), 400
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    alpha_bar = float(ddpm.alphas_cumprod[k])
    a, b = (schedule.beta_max - schedule.beta_min) / 2, schedule.beta_min                  # alpha^2 = exp(-a t^2 - b t)
    t = torch.tensor([(-b + math.sqrt(b * b - 4 * a * math.log(alpha_bar))) / (2 * a)])
    assert torch.isclose(schedule.alpha(t) ** 2, torch.tensor(alpha_bar), rtol=1e-5)
    x0, noise, out = torch.randn(3, 5, generator=torch.Generator().manual_seed(9))[:, None].unbind(0)
    model = Diffusion(Constant(out[0]), schedule, prediction="v")
    torch.testing.assert_close(model.target(x0, noise, t), ddpm.get_velocity(x0, noise, torch.tensor([k])))
    ddim = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
    ddim.set_timesteps(50)
    x_t = schedule.sample(x0, t, noise).x_t
    step = ddim.step(out, k, x_t)
    _, x0_hat = model.eps_and_x0(x_t, t)
    torch.testing.assert_close(x0_hat, step.pred_original_sample)


class Constant(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.n_in, self.value = value.shape[-1], value

    def forward(self, x, t, codes=None):
        return self.value.expand_as(x)


@pytest.mark.parametrize("t_min", [1e-3, 0.3])
def test_pf_ode_log_likelihood_of_the_oracle_is_the_gaussian_density(t_min):
    """With the exact eps, log p(x) through the PF-ODE is log N(x; alpha m, C) at t_min (x taken as x_{t_min});
    the prior N(0, sigma_1^2 I) misses only the mean alpha_1 m and alpha_1^2 S, alpha_1 = 0.0066."""
    schedule = VPLinear()
    model = Diffusion(GaussianOracle(schedule, "eps"), schedule, t_min=t_min)
    x = gaussian(6, seed=11).float()
    t0 = torch.tensor(model.t_min, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t0), schedule.sigma(t0)
    truth = multivariate_normal(alpha * M, alpha ** 2 * S + sigma ** 2 * I2).logpdf(x.double().numpy())
    np.testing.assert_allclose(model.log_likelihood(x).numpy(), truth, atol=0.03)          # alpha_1 m . x_1 ~ 0.01
    g = torch.Generator().manual_seed(0)
    hutchinson = model.log_likelihood(x, divergence="hutchinson", n_probes=64, generator=g).numpy()
    assert not np.allclose(hutchinson, truth, atol=1e-3) and abs((hutchinson - truth).mean()) < 0.15   # unbiased


# -- classifier-free guidance -------------------------------------------------------------------------------
def conditional_model(p_uncond=0.2):
    torch.manual_seed(0)
    network = ConditionalMLP(3, n_hidden=16, n_layers=1, time_dim=16, n_categories=[3])
    for parameter in network.parameters():             # zero-initialized FiLM and output would make every mix equal
        nn.init.normal_(parameter, std=0.5)
    return Diffusion(network, VPLinear(), condition_keys=["cell_type"], p_uncond=p_uncond)


def test_guidance_scale_one_is_the_conditional_and_zero_the_unconditional_model_exactly():
    model = conditional_model()
    x, t, codes = torch.randn(5, 3), torch.rand(5), torch.tensor([[0], [1], [2], [1], [0]])
    null = torch.full_like(codes, -1)
    conditional, unconditional = model.eps(x, t, codes), model.eps(x, t, null)
    assert not torch.allclose(conditional, unconditional)
    assert torch.equal(model.eps(x, t, codes, guidance_scale=1.0), conditional)
    assert torch.equal(model.eps(x, t, codes, guidance_scale=0.0), unconditional)
    assert torch.equal(model.eps(x, t), unconditional)                                    # codes None
    torch.testing.assert_close(model.eps(x, t, codes, guidance_scale=3.0),
                               unconditional + 3.0 * (conditional - unconditional))       # Ho & Salimans, eq. 6
    torch.testing.assert_close(model.score(x, t, codes, guidance_scale=3.0),
                               -model.eps(x, t, codes, 3.0) / model.schedule.sigma(t)[:, None])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(4, nfe=3, codes=2, guidance_scale=1.0, generator=g()),
                       model.sample(4, nfe=3, codes=2, generator=g()))
    assert not torch.allclose(model.sample(4, nfe=3, codes=2, generator=g()),
                              model.sample(4, nfe=3, codes=0, generator=g()))
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        model.eps(x, t, codes, guidance_scale=-0.5)
    with pytest.raises(ValueError, match="not trained on"):
        model.eps(x, t, torch.full_like(codes, 3))
    with pytest.raises(ValueError, match="needs"):
        model.eps(x, t, None, guidance_scale=2.0)


class CodeRecorder(nn.Module):
    """A network that records the codes it is given and predicts 0."""

    def __init__(self, d):
        super().__init__()
        self.n_in, self.weight = d, nn.Parameter(torch.zeros(()))

    def forward(self, x, t, codes=None):
        self.codes = codes
        return self.weight * x


def test_p_uncond_nulls_all_codes_of_that_fraction_of_cells_in_training_only():
    torch.manual_seed(0)
    n, p = 20_000, 0.3
    codes = torch.stack([torch.randint(3, (n,)), torch.randint(4, (n,))], dim=-1)
    batch = {"x": torch.randn(n, 2), "cell_type": codes[:, 0], "donor": codes[:, 1]}
    recorder = CodeRecorder(2)
    model = Diffusion(recorder, VPLinear(), condition_keys=["cell_type", "donor"], p_uncond=p).train()
    model.loss(batch, step=0)
    nulled = (recorder.codes == -1).all(-1)
    assert abs(nulled.float().mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert ((recorder.codes == -1).any(-1) == nulled).all()                          # all keys of a cell, or none
    assert torch.equal(recorder.codes[~nulled], codes[~nulled])
    model.eval().loss(batch)
    assert torch.equal(recorder.codes, codes)


# -- classifier guidance ----------------------------------------------------------------------------------------
MEANS, SPREAD = torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.5


class MixtureLogits(nn.Module):
    """The exact p(y | x_t, t) of an equal-weight mixture of N(mu_y, SPREAD^2 I): x_t | y ~ N(alpha mu_y, v_t I)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, x, t):
        alpha, var = self.schedule.alpha(t)[:, None, None], self.variance(t)[:, None, None]
        return -((x[:, None] - alpha * MEANS) ** 2).sum(-1) / (2 * var[..., 0])

    def variance(self, t):
        return self.schedule.alpha(t) ** 2 * SPREAD ** 2 + self.schedule.sigma(t) ** 2


def mixture_score(schedule):
    """grad log p_t(x) = sum_y p(y | x) (-(x - alpha mu_y) / v_t)."""
    logits = MixtureLogits(schedule)

    def score(x, t):
        weights = logits(x, t).softmax(-1)                                                # (B, 2)
        alpha, var = schedule.alpha(t)[:, None, None], logits.variance(t)[:, None, None]
        return (weights[..., None] * -(x[:, None] - alpha * MEANS) / var).sum(1)
    return score


def test_classifier_guidance_at_scale_one_is_the_class_conditional_score_and_samples_that_class():
    schedule = VPLinear()
    classifier = NoiseAwareClassifier(MixtureLogits(schedule), schedule, label_key="y")
    guided = classifier_guided_score(mixture_score(schedule), classifier, y=1, scale=1.0)
    x, t = 3 * torch.randn(50, 2), torch.rand(50) * 0.9 + 0.05
    variance = MixtureLogits(schedule).variance(t)[:, None]
    torch.testing.assert_close(guided(x, t), -(x - schedule.alpha(t)[:, None] * MEANS[1]) / variance)  # Bayes
    g = torch.Generator().manual_seed(0)
    start = schedule.prior(500, 2, generator=g)
    draws = {scale: samplers.reverse_sde(classifier_guided_score(mixture_score(schedule), classifier, 1, scale),
                                         schedule, start, nfe=60, generator=g)
             for scale in (0.0, 1.0, 4.0)}
    assert 0.4 < (draws[0.0][:, 0] > 0).float().mean() < 0.6                           # unguided: both classes
    assert (draws[1.0][:, 0] > 0).float().mean() > 0.99
    torch.testing.assert_close(draws[1.0].mean(0), MEANS[1], atol=0.08, rtol=0)        # the class's mean
    assert (draws[4.0][:, 0] > 0).float().mean() > 0.99
    with pytest.raises(ValueError, match=">= 0"):
        classifier_guided_score(mixture_score(schedule), classifier, 1, -1.0)


class InputRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x, t):
        self.x, self.t = x, t
        return self.logits.expand(len(x), 2) + x[:, :1]


def test_noise_aware_classifier_is_trained_on_x_t_of_the_schedule():
    torch.manual_seed(0)
    schedule, n = VPLinear(), 20_000
    network = InputRecorder()
    classifier = NoiseAwareClassifier(network, schedule, label_key="y", t_min=0.01)
    x0, y = torch.randn(n, 2) + 3.0, torch.randint(2, (n,))
    out = classifier.loss({"x": x0, "y": y})
    alpha, sigma = schedule.alpha(network.t)[:, None], schedule.sigma(network.t)[:, None]
    eps = (network.x - alpha * x0) / sigma
    assert network.t.min() >= 0.01 and network.t.max() <= 1.0 and abs(network.t.mean() - 0.505) < 0.01
    assert eps.mean(0).abs().max() < 0.05 and (eps.std(0) - 1).abs().max() < 0.05
    torch.testing.assert_close(out.loss, F.cross_entropy(network(network.x, network.t), y))
    with pytest.raises(ValueError, match="Class labels"):
        classifier.log_prob(x0[:3], 0.5, 2)


# -- fit() smoke --------------------------------------------------------------------------------------------------
def random_batches(n=64, d=4, size=32):
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(n, d, generator=g), torch.randint(3, (n,), generator=g)
    return [{"x": x[i:i + size], "cell_type": labels[i:i + size]} for i in range(0, n, size)]


@pytest.mark.parametrize("prediction,schedule", [("eps", VPLinear()), ("x0", VPLinear()), ("v", VPCosine()),
                                                 ("eps", VE(0.01, 5.0))])
def test_diffusion_fits_one_epoch_and_every_sampler_returns_n_points(prediction, schedule):
    network = ConditionalMLP(4, n_hidden=16, n_layers=1, time_dim=16, n_categories=[3])
    model = Diffusion(network, schedule, prediction=prediction, condition_keys=["cell_type"], p_uncond=0.2)
    history = fit(model, random_batches(), random_batches(), epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    for sampler, method in [("ddim", "euler"), ("ancestral", "euler"), ("sde", "euler"), ("pc", "euler"),
                            ("ode", "euler"), ("ode", "heun")]:
        draws = model.sample(5, sampler=sampler, nfe=4, method=method, codes=1, guidance_scale=2.0)
        assert draws.shape == (5, 4) and torch.isfinite(draws).all(), (sampler, method)
    assert model.sample(5, nfe=4).shape == (5, 4)
    with pytest.raises(ValueError, match="sampler"):
        model.sample(5, sampler="leapfrog")


@pytest.mark.parametrize("objective", ["dsm", "ssm", "ism"])
def test_score_model_fits_one_epoch_and_samples(objective):
    model = ScoreModel(ConditionalMLP(4, n_hidden=16, n_layers=1, time_dim=16), VE(0.01, 5.0), objective=objective)
    history = fit(model, random_batches(), random_batches(), epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    draws = model.sample(5, n_levels=3, steps_per_level=2)
    assert draws.shape == (5, 4) and torch.isfinite(draws).all()


def test_noise_aware_classifier_fits_one_epoch():
    classifier = NoiseAwareClassifier(TimeConditionalClassifier(4, 3, n_hidden=16, n_layers=1, time_dim=16),
                                      VPLinear(), label_key="cell_type")
    history = fit(classifier, random_batches(), random_batches(), epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert classifier.log_prob(torch.randn(5, 4), 0.5, 1).shape == (5,)
