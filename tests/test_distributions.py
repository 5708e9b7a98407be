"""Count likelihoods against scipy, over zeros, large counts, tiny and huge dispersion."""
import numpy as np
import pytest
import torch
from scipy import special, stats

from genailab_core.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial, log_nb, log_zinb

COUNTS = np.array([0, 1, 2, 7, 30, 250, 1000, 20000], dtype=np.float64)
MEANS = np.array([1e-3, 0.5, 5.0, 200.0, 1e4])
THETAS = np.array([1e-4, 1e-2, 1.0, 50.0, 1e4, 1e7])   # dispersion 1/theta from 1e4 (huge) to 1e-7 (tiny)


def grid():
    x, mu, theta = np.meshgrid(COUNTS, MEANS, THETAS, indexing="ij")
    return x.ravel(), mu.ravel(), theta.ravel()


def t64(a):
    return torch.tensor(a, dtype=torch.float64)


def scipy_nb(x, mu, theta):
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))   # n = theta, p = theta / (theta + mu)


def test_nb_log_prob_matches_scipy():
    x, mu, theta = grid()
    ours = NegativeBinomial(t64(mu), t64(theta)).log_prob(t64(x)).numpy()
    ref = scipy_nb(x, mu, theta)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("pi", [1e-6, 0.05, 0.5, 0.99])
def test_zinb_log_prob_matches_scipy_mixture(pi):
    x, mu, theta = grid()
    logits = np.full_like(x, np.log(pi) - np.log1p(-pi))
    ours = ZeroInflatedNegativeBinomial(t64(mu), t64(theta), t64(logits)).log_prob(t64(x)).numpy()
    nb = scipy_nb(x, mu, theta)
    ref = np.where(x == 0, np.logaddexp(np.log(pi), np.log1p(-pi) + nb), np.log1p(-pi) + nb)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_nb_float32_moderate_regime_matches_scipy():
    x, mu, theta = np.meshgrid(COUNTS[:6], MEANS[:4], np.array([0.1, 1.0, 20.0]), indexing="ij")
    x, mu, theta = x.ravel(), mu.ravel(), theta.ravel()
    ours = log_nb(torch.tensor(x, dtype=torch.float32), torch.tensor(mu, dtype=torch.float32),
                  torch.tensor(theta, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(ours, scipy_nb(x, mu, theta), rtol=1e-4, atol=1e-4)


def test_gradients_finite_on_grid():
    x, mu, theta = grid()
    mu_t, theta_t, logit_t = t64(mu).requires_grad_(), t64(theta).requires_grad_(), t64(np.zeros_like(x)).requires_grad_()
    log_zinb(t64(x), mu_t, theta_t, logit_t).sum().backward()
    for grad in (mu_t.grad, theta_t.grad, logit_t.grad):
        assert torch.isfinite(grad).all()


def test_nb_converges_to_poisson_as_theta_grows():
    x = t64(COUNTS[:5])
    ours = log_nb(x, t64(3.0), t64(1e8)).numpy()
    np.testing.assert_allclose(ours, stats.poisson.logpmf(COUNTS[:5], 3.0), rtol=1e-5)


def test_pmf_sums_to_one():
    x = torch.arange(0, 4000, dtype=torch.float64)
    for mu, theta, pi in [(4.0, 0.3, 0.0), (20.0, 5.0, 0.3)]:
        logit = torch.tensor(np.log(pi + 1e-300) - np.log1p(-pi), dtype=torch.float64)
        total = log_zinb(x, t64(mu), t64(theta), logit).exp().sum()
        assert abs(float(total) - 1.0) < 1e-6


# (mu, theta, pi): small theta (bursty), moderate, large theta (nearly Poisson); without and with zero inflation
SAMPLER_CASES = [(0.5, 0.1, 0.0), (6.0, 1.5, 0.0), (30.0, 1e4, 0.0), (3.0, 0.5, 0.3), (6.0, 1.5, 0.27), (40.0, 200.0, 0.6)]
N_DRAWS = 400_000


def nb_raw_moments(mu, theta, pi, orders=(1, 2, 3, 4)):
    """E[x^k] of the ZINB (pi = 0: the NB) from scipy's nbinom: the zero mass adds nothing to raw moments."""
    nb = stats.nbinom(theta, theta / (theta + mu))
    return [(1 - pi) * nb.moment(k) for k in orders]


def central_moments(mu, theta, pi):
    """Mean, variance and fourth central moment, for the standard errors of the sample mean and variance."""
    m1, m2, m3, m4 = nb_raw_moments(mu, theta, pi)
    var = m2 - m1 ** 2
    mu4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
    return m1, var, mu4


@pytest.mark.parametrize("mu,theta,pi", SAMPLER_CASES)
def test_sampler_mean_and_variance_match_the_formulas(mu, theta, pi):
    """NB: E = mu, Var = mu + mu^2 / theta. ZINB: E = (1 - pi) mu, Var = (1 - pi) mu (1 + mu / theta + pi mu).

    Each is checked within 5 standard errors: sqrt(Var / n) for the mean, sqrt((mu_4 - Var^2) / n) for the
    variance (mu_4 the fourth central moment, exact from scipy's NB moments)."""
    mean = (1 - pi) * mu
    variance = (1 - pi) * mu * (1 + mu / theta + pi * mu)
    exact_mean, exact_var, mu4 = central_moments(mu, theta, pi)
    np.testing.assert_allclose([exact_mean, exact_var], [mean, variance], rtol=1e-6)    # the formulas themselves
    args = (torch.full((N_DRAWS,), mu, dtype=torch.float64), torch.tensor(theta, dtype=torch.float64))
    dist = (NegativeBinomial(*args) if pi == 0 else
            ZeroInflatedNegativeBinomial(*args, torch.logit(torch.tensor(pi, dtype=torch.float64))))
    np.testing.assert_allclose([float(dist.mean[0]), float(dist.variance[0])], [mean, variance], rtol=1e-12)
    torch.manual_seed(0)
    draws = dist.sample().numpy()
    assert abs(draws.mean() - mean) < 5 * np.sqrt(variance / N_DRAWS)
    assert abs(draws.var(ddof=1) - variance) < 5 * np.sqrt((mu4 - variance ** 2) / N_DRAWS)
    p_zero = pi + (1 - pi) * (theta / (theta + mu)) ** theta
    assert abs((draws == 0).mean() - p_zero) < 5 * np.sqrt(p_zero * (1 - p_zero) / N_DRAWS)


@pytest.mark.parametrize("bad,msg", [(torch.tensor([1.5]), "non-integer"), (torch.tensor([-1.0]), "negative"),
                                     (torch.tensor([float("nan")]), "NaN")])
def test_invalid_counts_raise_clear_error(bad, msg):
    with pytest.raises(ValueError, match=msg):
        NegativeBinomial(torch.tensor([2.0]), torch.tensor([1.0]), validate_args=True).log_prob(bad)


F32_THETAS = np.array([1e-3, 1.0, 1e2, 1e4, 1e6])
F32_COUNTS = np.array([0, 1, 3, 10, 100, 1_000, 10_000])
F32_MEANS = np.array([1e-3, 0.3, 2.0, 30.0, 1e3, 1e4])


def float32_tolerance(x, mu):
    """Rounding float32 cannot avoid: ~eps32 of the Poisson part's largest terms, x log mu and lgamma(x + 1)."""
    scale = x * np.abs(np.log(mu)) + special.gammaln(x + 1) + mu
    return 1e-5 + 4 * np.finfo(np.float32).eps * scale


def naive_log_nb(x, mu, theta):
    """The textbook form, which cancels catastrophically at large theta in float32."""
    return (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0)
            - theta * torch.log1p(mu / theta) + x * (torch.log(mu) - torch.log(theta + mu)))


def test_nb_float32_matches_scipy_up_to_huge_theta_and_counts():
    x, mu, theta = (a.ravel() for a in np.meshgrid(F32_COUNTS, F32_MEANS, F32_THETAS, indexing="ij"))
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)
    ours = log_nb(f32(x), f32(mu), f32(theta)).double().numpy()
    ref, tol = scipy_nb(x, mu, theta), float32_tolerance(x, mu)
    assert (np.abs(ours - ref) <= tol).all(), np.abs(ours - ref).max()
    typical = (x <= 10) & (mu <= 30)                            # single-cell scale: the tolerance is ~1e-5 nats
    assert np.abs(ours - ref)[typical].max() < 3e-5
    naive = naive_log_nb(f32(x), f32(mu), f32(theta)).double().numpy()
    assert not (np.abs(naive - ref) <= tol)[theta >= 1e4].all()   # the naive form fails this test


def test_nb_zero_count_at_zero_mean_is_certain_with_finite_gradient():
    mu = torch.zeros(3, requires_grad=True)
    theta = torch.tensor([0.5, 5.0, 1e5], requires_grad=True)
    log_p = log_nb(torch.zeros(3), mu, theta)
    assert torch.equal(log_p.detach(), torch.zeros(3))
    log_p.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(theta.grad).all()
    np.testing.assert_allclose(mu.grad.numpy(), -1.0, rtol=1e-6)      # d/dmu [-theta log1p(mu/theta)] = -1 at 0
