"""Evaluation that runs a model over a loader: cell-weighted means, the held-out ELBO below the
importance-sampled log-likelihood, which reaches the exact log p(x) of the linear-Gaussian model."""
import math

import pytest
import torch

from genailab_core.models import VAE, LinearGaussianVAE
from genailab_core.models.evaluation import heldout_elbo, marginal_log_likelihood, mean_over_batches


def test_mean_over_batches_weights_cells_not_batches():
    batches = [{"x": torch.tensor([[1.0], [3.0], [5.0]])}, {"x": torch.tensor([[10.0]])}]
    assert mean_over_batches(lambda x, c: x[:, 0], batches) == pytest.approx((1 + 3 + 5 + 10) / 4)   # not 6.5


def linear_model(seed=0):
    """Loadings U diag(3, 1) R with R a 45-degree rotation: non-orthogonal columns, so the exact posterior is
    correlated and the mean-field ELBO has a visible gap."""
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussianVAE(6, 2)
    U, _ = torch.linalg.qr(torch.randn(6, 2, generator=g))
    R = torch.tensor([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2)
    with torch.no_grad():
        model.W.copy_(U @ torch.diag(torch.tensor([3.0, 1.0])) @ R)
        model.log_sigma.fill_(math.log(0.5))
    model.set_mean_field_encoder()
    return model


def test_marginal_ll_reaches_the_exact_log_likelihood_and_the_elbo_stays_below():
    torch.manual_seed(0)
    model = linear_model()
    x = model.marginal().sample((300,))
    batches = [{"x": x[i:i + 64]} for i in range(0, 300, 64)]                   # a short last batch
    exact = float(model.exact_log_likelihood(x).mean())
    mll = marginal_log_likelihood(model, batches, n_samples=2000)
    elbo = heldout_elbo(model, batches, n_repeats=20)
    assert exact - 0.03 < mll < exact + 0.01
    q, posterior = model.encode(x), model.exact_posterior(x)
    q_full = torch.distributions.MultivariateNormal(q.loc, scale_tril=torch.diag_embed(q.scale))
    gap = torch.distributions.kl_divergence(q_full, posterior)                   # KL(q || p(z|x)), (cells,)
    assert elbo == pytest.approx(float((model.exact_log_likelihood(x) - gap).mean()), abs=0.03)
    assert float(gap.mean()) > 0.2 and elbo < mll - 0.1                          # ELBO = log p(x) - KL(q || p(z|x))


def test_a_conditional_model_is_scored_with_its_condition_codes():
    torch.manual_seed(0)
    model = VAE(10, n_latent=2, n_hidden=8, condition_keys=["condition"], n_conditions=[2]).eval()
    x = torch.poisson(torch.full((40, 10), 4.0))
    codes = torch.arange(40) % 2
    batches = [{"x": x[:25], "condition": codes[:25]}, {"x": x[25:], "condition": codes[25:]}]
    torch.manual_seed(1)
    got = marginal_log_likelihood(model, batches, n_samples=50)
    torch.manual_seed(1)
    direct = torch.cat([model.log_likelihood_is(b["x"], b["condition"][:, None], n_samples=50) for b in batches])
    assert got == pytest.approx(float(direct.mean()), rel=1e-6)
    torch.manual_seed(1)
    swapped = [{"x": b["x"], "condition": 1 - b["condition"]} for b in batches]
    assert marginal_log_likelihood(model, swapped, n_samples=50) != pytest.approx(got, rel=1e-6)
