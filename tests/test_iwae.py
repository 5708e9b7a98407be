"""The K-sample bound of Burda et al. (2016): K = 1 is the ELBO; on a linear-Gaussian model, where
log p(x) is exact, it rises with K towards log p(x). Also: every likelihood trains under every
objective, and free bits stop the gradient of the KL of dimensions below the threshold."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch.distributions import Normal

from genailab_core.data.simulate import simulate_counts
from genailab_core.models import VAE, LinearGaussianVAE
from genailab_core.models.vae import iwae_bound
from genailab_core.train import fit


def nb_counts(n_cells=200, n_genes=30, seed=0):
    adata = simulate_counts(n_cells=n_cells, n_genes=n_genes, n_cell_types=2, n_batches=1, n_programs=0,
                            dispersion=2.0, library_log_mean=np.log(500), seed=seed)
    return torch.tensor(adata.X.toarray())


def linear_gaussian(seed=0, n_features=10, singular_values=(3.0, 1.5, 0.5), sigma=0.5):
    """A linear-Gaussian VAE with a correlated posterior (loadings U S R, R a random rotation) and
    the best mean-field encoder: the ELBO's gap is KL(q || p(z|x)) > 0, log p(x) is exact."""
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussianVAE(n_features, len(singular_values))
    U, _ = torch.linalg.qr(torch.randn(n_features, len(singular_values), generator=g))
    R, _ = torch.linalg.qr(torch.randn(len(singular_values), len(singular_values), generator=g))
    with torch.no_grad():
        model.W.copy_(U @ torch.diag(torch.tensor(singular_values)) @ R)
        model.b.copy_(torch.randn(n_features, generator=g))
        model.log_sigma.fill_(math.log(sigma))
    model.set_mean_field_encoder()
    return model


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson", "gaussian"])
def test_iwae_with_one_sample_is_the_elbo_at_the_same_z(likelihood):
    torch.manual_seed(0)
    x = nb_counts()
    x = torch.log1p(x) if likelihood == "gaussian" else x
    model = VAE(x.shape[1], n_latent=4, n_hidden=16, likelihood=likelihood).eval()
    eps = torch.randn(1, x.shape[0], 4)
    bound = iwae_bound(model.log_weights(x, n_samples=1, eps=eps))           # (batch,)
    with torch.no_grad():
        qz = model.encode(x)
        z = qz.loc + qz.scale * eps[0]                                        # the same z
        elbo = (model.decode(z, model.library(x)).log_prob(x).sum(-1)
                + Normal(0.0, 1.0).log_prob(z).sum(-1) - qz.log_prob(z).sum(-1))
    torch.testing.assert_close(bound.detach(), elbo, rtol=1e-5, atol=1e-3)


def test_iwae_one_sample_equals_elbo_for_the_linear_model_too():
    model = linear_gaussian()
    x = model.marginal().sample((50,))
    eps = torch.randn(1, 50, model.n_latent)
    qz = model.encode(x)
    z = qz.loc + qz.scale * eps[0]
    elbo = model.decode(z).log_prob(x).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1) - qz.log_prob(z).sum(-1)
    torch.testing.assert_close(iwae_bound(model.log_weights(x, eps=eps)), elbo)


def test_exact_log_likelihood_of_the_linear_model_matches_scipy():
    model = linear_gaussian()
    x = model.marginal().sample((20,))
    cov = (model.W @ model.W.T + model.log_sigma.exp() ** 2 * torch.eye(model.n_features)).detach().numpy()
    expected = multivariate_normal(model.b.detach().numpy(), cov).logpdf(x.numpy())
    np.testing.assert_allclose(model.exact_log_likelihood(x).detach().numpy(), expected, rtol=1e-5)


def test_importance_sampling_with_the_exact_posterior_is_exact():
    """With q = p(z|x) every weight equals p(x): a single sample gives log p(x) exactly."""
    model = linear_gaussian()
    x = model.marginal().sample((5,))
    post = model.exact_posterior(x)
    z = post.sample()
    log_w = model.decode(z).log_prob(x).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1) - post.log_prob(z)
    torch.testing.assert_close(log_w, model.exact_log_likelihood(x), rtol=1e-4, atol=1e-4)


def test_iwae_bound_rises_with_k_to_the_exact_log_likelihood():
    torch.manual_seed(0)
    model = linear_gaussian()
    x = model.marginal().sample((400,))
    with torch.no_grad():
        exact = model.exact_log_likelihood(x).mean().item()
        bounds = {k: model.log_likelihood_is(x, n_samples=k).mean().item() for k in (1, 10, 100, 1000, 5000)}
    values = list(bounds.values())
    assert exact - bounds[1] > 0.3                                       # the mean-field ELBO is loose
    assert all(b > a for a, b in zip(values, values[1:])), bounds      # L_1 < L_10 < ... (on average)
    assert all(v < exact + 0.05 for v in values), (bounds, exact)      # a lower bound, up to MC noise
    assert exact - bounds[5000] < 0.1, (bounds, exact)                 # measured 0.01-0.045 over seeds 0-2
    assert exact - bounds[5000] < (exact - bounds[1]) / 10, (bounds, exact)


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson", "gaussian"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_each_likelihood_and_objective_trains_one_epoch(likelihood, objective):
    x = nb_counts()
    data = torch.log1p(x) if likelihood == "gaussian" else x
    model = VAE(x.shape[1], n_latent=3, n_hidden=16, likelihood=likelihood, objective=objective,
                n_importance=5, beta=2.0 if objective == "elbo" else 1.0,
                free_bits=0.1 if objective == "elbo" else 0.0)
    batches = [{"x": data[i:i + 50]} for i in range(0, len(data), 50)]
    history = fit(model, batches, batches, epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()


def ppca_maximum_likelihood(x, n_latent):
    """Tipping & Bishop (1999), eq. 7-8: sigma^2 = mean of the discarded eigenvalues of the sample covariance,
    W W^T = U_D (Lambda_D - sigma^2 I) U_D^T, b = the sample mean. Returns (sigma^2, U_D, W W^T, mean log p)."""
    centred = x - x.mean(0)
    eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / len(x))
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    sigma2, top = eigenvalues[n_latent:].mean(), vectors[:, :n_latent]
    wwt = top @ torch.diag(eigenvalues[:n_latent] - sigma2) @ top.T
    cov = wwt + sigma2 * torch.eye(x.shape[1])
    return sigma2, top, wwt, torch.distributions.MultivariateNormal(x.mean(0), cov).log_prob(x).mean()


def test_linear_vae_trained_by_fit_reaches_the_closed_form_ppca_maximum_likelihood():
    """Lucas et al. (2019): the linear VAE's ELBO is maximized at the PPCA MLE. fit() gets there: the noise
    variance, the principal subspace and the log-likelihood of the closed form."""
    torch.manual_seed(0)
    n_features, n_latent, n = 8, 2, 2000
    loadings = torch.randn(n_features, n_latent) * torch.tensor([2.0, 1.0])
    x = torch.randn(n, n_latent) @ loadings.T + torch.randn(n_features) + 0.5 * torch.randn(n, n_features)
    sigma2, top, wwt, best = ppca_maximum_likelihood(x, n_latent)
    model = LinearGaussianVAE(n_features, n_latent)
    fit(model, [{"x": x[:1000]}, {"x": x[1000:]}], epochs=400, lr=5e-2, schedule="cosine", progress=False)
    with torch.no_grad():
        reached = model.exact_log_likelihood(x).mean()
        basis, _ = torch.linalg.qr(model.W)
        assert float(model.log_sigma.exp() ** 2) == pytest.approx(float(sigma2), rel=0.01)
        assert float((basis @ basis.T - top @ top.T).norm()) < 0.01          # the same principal subspace
        torch.testing.assert_close(model.b, x.mean(0), atol=0.01, rtol=0)
    assert float(best) - 0.02 < float(reached) <= float(best) + 1e-4          # the MLE is the maximum
    assert float(torch.trace(model.W.detach() @ model.W.detach().T)) == pytest.approx(float(torch.trace(wwt)), rel=0.1)


def test_linear_model_trains_with_both_objectives():
    torch.manual_seed(0)
    data = linear_gaussian().marginal().sample((300,))
    batches = [{"x": data[i:i + 100]} for i in range(0, 300, 100)]
    for objective in ("elbo", "iwae"):
        model = LinearGaussianVAE(10, 3, objective=objective, n_importance=8)
        history = fit(model, batches, epochs=30, lr=1e-2, progress=False)
        assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]


def test_free_bits_stop_the_gradient_of_dimensions_below_lambda():
    model = VAE(10, n_latent=4, n_hidden=8, beta=2.0, free_bits=0.5)
    kl = torch.tensor([[0.1, 0.9, 0.2, 2.0],
                       [0.3, 0.7, 0.2, 1.0]], requires_grad=True)          # batch means 0.2, 0.8, 0.2, 1.5
    penalty = model.kl_penalty(kl)
    assert penalty.item() == pytest.approx(2.0 * (0.5 + 0.8 + 0.5 + 1.5))
    penalty.backward()
    grad = kl.grad.mean(0) * kl.shape[0]                                   # d penalty / d batch-mean KL_d
    torch.testing.assert_close(grad, torch.tensor([0.0, 2.0, 0.0, 2.0]))


def test_free_bits_end_to_end_no_encoder_gradient_from_a_collapsed_dimension():
    """Through the network: the KL of a dimension below lambda sends no gradient to its encoder row."""
    torch.manual_seed(0)
    x = nb_counts(n_cells=64)
    model = VAE(x.shape[1], n_latent=3, n_hidden=16, free_bits=1e3, norm=None, dropout=0.0)
    _, kl = model.elbo_terms(x, per_dimension=True)
    model.kl_penalty(kl).backward()                                        # every dimension is below 1e3 nats
    for p in model.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize("setting", [dict(beta=2.0), dict(free_bits=0.5), dict(kl_warmup_steps=10)])
def test_iwae_refuses_settings_it_would_ignore(setting):
    with pytest.raises(ValueError, match="IWAE bound has no separate KL term"):
        VAE(10, objective="iwae", n_importance=5, **setting)
