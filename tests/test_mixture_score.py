"""The exact mixture score against independent references: scipy's densities, autograd, Monte Carlo."""
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from genailab_core.models.mixture_score import GaussianMixtureScore


def random_mixture(k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, d, d))
    covariances = a @ a.transpose(0, 2, 1) / d + 0.1 * np.eye(d)
    weights = rng.dirichlet(np.ones(k))
    means = 3 * rng.normal(size=(k, d))
    return GaussianMixtureScore(weights, means, covariances), (weights, means, covariances)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0])
def test_log_prob_matches_scipy(sigma):
    mix, (w, m, c) = random_mixture()
    x = np.random.default_rng(1).normal(size=(20, 4)) * 3
    expected = np.log(sum(wk * multivariate_normal(mk, ck + sigma ** 2 * np.eye(4)).pdf(x) for wk, mk, ck in zip(w, m, c)))
    got = mix.log_prob(torch.as_tensor(x), sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_score_is_gradient_of_log_prob(sigma):
    mix, _ = random_mixture()
    x = torch.randn(15, 4, dtype=torch.float64, requires_grad=True) * 2
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)[0]
    torch.testing.assert_close(mix.score(x.detach(), sigma), grad, rtol=1e-8, atol=1e-10)


def test_single_gaussian_score_closed_form():
    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    mix = GaussianMixtureScore([1.0], [[1.0, -1.0]], cov[None])
    x = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    sigma = 0.7
    expected = -(x - torch.tensor([1.0, -1.0], dtype=torch.float64)) @ torch.linalg.inv(
        torch.as_tensor(cov) + sigma ** 2 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(mix.score(x, sigma), expected)


def test_smoothed_samples_have_smoothed_moments():
    mix, (w, m, c) = random_mixture(k=2, d=3, seed=2)
    sigma = 1.5
    x = mix.sample(200_000, sigma=sigma, generator=torch.Generator().manual_seed(0)).double().numpy()
    mean = (w[:, None] * m).sum(0)
    second = sum(wk * (ck + sigma ** 2 * np.eye(3) + np.outer(mk, mk)) for wk, mk, ck in zip(w, m, c))
    np.testing.assert_allclose(x.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(x.T, bias=True), second - np.outer(mean, mean), atol=0.1)


def test_expected_score_is_zero_and_fisher_identity():
    """E_q[s] = 0 and E_q[||s||^2] = -E_q[tr grad s] (integration by parts, Hyvarinen 2005)."""
    mix, _ = random_mixture(k=2, d=2, seed=3)
    sigma = 0.4
    x = mix.sample(100_000, sigma=sigma, generator=torch.Generator().manual_seed(1)).double()
    s = mix.score(x, sigma)
    assert s.mean(0).abs().max() < 0.03 * s.pow(2).sum(1).mean().sqrt()
    xs = x[:5000].clone().requires_grad_(True)
    score = mix.score(xs, sigma)
    trace = sum(torch.autograd.grad(score[:, i].sum(), xs, retain_graph=True)[0][:, i] for i in range(2))
    # the score is computed in float64 inside; autograd through it gives the Jacobian's trace
    fisher = mix.score(x, sigma).pow(2).sum(1).mean()
    assert abs(float(-trace.mean() - fisher)) < 0.1 * float(fisher)


def test_responsibilities_and_validation():
    mix, _ = random_mixture()
    r = mix.responsibilities(torch.randn(7, 4), 0.2)
    torch.testing.assert_close(r.sum(1), torch.ones(7))
    with pytest.raises(ValueError):
        GaussianMixtureScore([0.5, 0.6], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError):
        mix.score(torch.randn(3, 5))


def test_from_sklearn():
    from sklearn.mixture import GaussianMixture

    x = np.random.default_rng(0).normal(size=(300, 2))
    gmm = GaussianMixture(2, random_state=0).fit(x)
    mix = GaussianMixtureScore.from_sklearn(gmm)
    np.testing.assert_allclose(mix.log_prob(torch.as_tensor(x)).numpy(), gmm.score_samples(x), rtol=1e-8)
    with pytest.raises(ValueError):
        GaussianMixtureScore.from_sklearn(GaussianMixture(2, covariance_type="diag").fit(x))
