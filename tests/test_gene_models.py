"""Per-gene Poisson / NB / ZINB maximum likelihood against closed forms, scipy and simulated truth."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from genailab_core.gene_models import likelihood, newton
from genailab_core.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from genailab_core.gene_models import (
    CountModelFit,
    GeneFits,
    expected_zero_rate,
    fit_gene_models,
    likelihood_ratio_test,
    normalized_mean_variance,
    observed_zero_rate,
    preferred_model,
    zero_probability,
)


def simulate_nb(n_cells, mean_counts, theta, pi=None, seed=0):
    """NB counts with mu_ng = l_n p_g, library sizes spread over ~10x; optional zero inflation pi (genes,).

    Drawn by the package's NB / ZINB sampler (``Distribution.sample``) on a torch stream seeded with ``seed``.
    """
    rng = np.random.default_rng(seed)
    library = rng.lognormal(np.log(2000), 0.6, n_cells)                          # (cells,)
    p = np.asarray(mean_counts) / 2000.0                                           # (genes,)
    mu, theta = torch.tensor(library[:, None] * p), torch.tensor(np.asarray(theta, dtype=float))
    dist = (NegativeBinomial(mu, theta) if pi is None else
            ZeroInflatedNegativeBinomial(mu, theta, torch.logit(torch.tensor(np.asarray(pi, dtype=float)))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        counts = dist.sample().numpy()
    return sp.csr_matrix(counts.astype(np.float32)), library, p


@pytest.fixture(scope="module")
def nb_data():
    """20,000 cells; 12 moderately expressed genes (1-8 UMIs per cell at median depth) with theta 0.3-5."""
    means = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 1.0, 2.0, 3.0, 5.0, 8.0])
    thetas = np.array([0.3, 0.5, 1.0, 2.0, 5.0, 0.4, 3.0, 2.0, 0.7, 5.0, 1.5, 0.3])
    counts, library, p = simulate_nb(20_000, means, thetas, seed=1)
    fits = fit_gene_models(counts, library, models=("poisson", "nb", "zinb"))
    return counts, library, p, thetas, fits


def test_nb_fit_recovers_theta_and_p(nb_data):
    *_, p, thetas, fits = nb_data
    assert fits.nb.converged.all()
    np.testing.assert_allclose(fits.nb.theta, thetas, rtol=0.10)
    np.testing.assert_allclose(fits.nb.p, p, rtol=0.05)


def test_poisson_mle_is_the_closed_form_and_its_loglik_matches_scipy(nb_data):
    counts, library, _, _, fits = nb_data
    x = counts.toarray()
    p_closed = x.sum(0) / library.sum()
    np.testing.assert_allclose(fits.poisson.p, p_closed, rtol=1e-10)
    loglik = stats.poisson.logpmf(x, library[:, None] * p_closed).sum(0)
    np.testing.assert_allclose(fits.poisson.loglik, loglik, rtol=1e-9)
    assert np.isinf(fits.poisson.theta).all() and (fits.poisson.pi == 0).all()


def test_nb_loglik_matches_scipy_and_beats_poisson_on_overdispersed_data(nb_data):
    counts, library, _, _, fits = nb_data
    x, mu = counts.toarray(), library[:, None] * fits.nb.p
    ref = stats.nbinom.logpmf(x, fits.nb.theta, fits.nb.theta / (fits.nb.theta + mu)).sum(0)
    np.testing.assert_allclose(fits.nb.loglik, ref, rtol=1e-9)
    assert (fits.nb.loglik > fits.poisson.loglik + 100).all()                    # overdispersed: by far
    assert (fits.zinb.loglik >= fits.nb.loglik).all()                              # nesting
    assert (likelihood_ratio_test(fits, "poisson", "nb").pvalue < 1e-10).all()
    assert set(preferred_model(fits)) <= {"nb", "zinb"}


def test_nb_data_need_no_zero_inflation(nb_data):
    counts, library, *_, fits = nb_data
    assert fits.zinb.pi.max() < 0.05
    assert likelihood_ratio_test(fits, "nb", "zinb").pvalue.min() > 1e-3         # no gene needs ZINB
    zero_error = np.abs(expected_zero_rate(fits, library, "nb") - observed_zero_rate(counts))
    assert zero_error.max() < 0.01


def test_poisson_data_get_theta_inf_or_large():
    rng = np.random.default_rng(3)
    library = rng.lognormal(np.log(2000), 0.6, 5000)
    counts = rng.poisson(library[:, None] * np.array([5e-4, 1e-3, 2e-3]))
    fits = fit_gene_models(counts, library, models=("poisson", "nb"))
    assert (fits.nb.loglik >= fits.poisson.loglik).all()
    assert (fits.nb.theta > 20).all()                                               # no overdispersion
    assert (likelihood_ratio_test(fits).statistic < 10).all()


def test_zinb_fit_recovers_zero_inflation():
    pis = np.array([0.0, 0.1, 0.3, 0.5])
    counts, library, _ = simulate_nb(10_000, [4.0, 4.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0], pi=pis, seed=2)
    fits = fit_gene_models(counts, library, models=("nb", "zinb"))
    assert fits.zinb.converged.all()
    np.testing.assert_allclose(fits.zinb.pi, pis, atol=0.03)
    np.testing.assert_allclose(fits.zinb.theta[1:], 2.0, rtol=0.2)
    assert (likelihood_ratio_test(fits, "nb", "zinb").pvalue[1:] < 1e-6).all()    # ZI genes need ZINB


def hand_fits(p, theta, pi, model):
    fit = CountModelFit(model=model, p=np.asarray(p), theta=np.asarray(theta, float), pi=np.asarray(pi, float),
                        loglik=np.zeros(len(p)), converged=np.ones(len(p), bool))
    return GeneFits(n_cells=3, **{model: fit})


def test_expected_zero_rates_match_scipy_on_a_hand_case():
    library = np.array([1000.0, 2000.0, 5000.0])
    p, theta, pi = np.array([1e-4, 1e-3, 5e-3]), np.array([0.5, 2.0, 10.0]), np.array([0.0, 0.2, 0.6])
    mu = library[:, None] * p
    nb = stats.nbinom.pmf(0, theta, theta / (theta + mu)).mean(0)
    np.testing.assert_allclose(expected_zero_rate(hand_fits(p, theta, 0 * pi, "nb"), library, "nb"), nb, rtol=1e-12)
    zinb = (pi + (1 - pi) * stats.nbinom.pmf(0, theta, theta / (theta + mu))).mean(0)
    np.testing.assert_allclose(expected_zero_rate(hand_fits(p, theta, pi, "zinb"), library, "zinb"), zinb,
                               rtol=1e-12)
    poisson = stats.poisson.pmf(0, mu).mean(0)
    np.testing.assert_allclose(expected_zero_rate(hand_fits(p, np.inf * theta, 0 * pi, "poisson"), library,
                                                  "poisson"), poisson, rtol=1e-12)
    assert zero_probability(3.0) == pytest.approx(np.exp(-3.0))


@pytest.mark.parametrize("zero_inflated", [False, True])
def test_closed_form_derivatives_match_autograd(zero_inflated):
    counts, library, p = simulate_nb(300, [0.5, 2.0, 6.0, 20.0], [0.4, 1.0, 5.0, 50.0], seed=4)
    data = likelihood._prepare(counts, library, torch.float64)
    rows = [np.log(p), np.log([0.4, 1.0, 5.0, 50.0])] + ([[-2.0, 0.0, 1.0, -6.0]] if zero_inflated else [])
    params = torch.tensor(np.array(rows), dtype=torch.float64)
    grad, hess = newton._loglik_derivatives(data, params, chunk=3)

    def total(z):
        return likelihood._loglik_per_gene(data, *newton._natural(z)).sum()

    ref_grad = torch.autograd.functional.jacobian(total, params)
    ref_hess = torch.autograd.functional.hessian(total, params)                    # (k, genes, k, genes)
    blocks = torch.stack([ref_hess[:, g, :, g] for g in range(params.shape[1])])
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(hess, blocks, rtol=1e-9, atol=1e-9)


def test_normalized_mean_variance_uses_the_harmonic_mean_depth():
    rng = np.random.default_rng(5)
    library = rng.lognormal(np.log(2000), 0.6, 20_000)
    counts = rng.poisson(library[:, None] * np.array([5e-4, 2e-3]))               # Poisson: Var = mean
    mv = normalized_mean_variance(counts, library)
    depth = 1 / np.mean(1 / library)
    scaled = counts * (depth / library)[:, None]
    np.testing.assert_allclose(mv.mean, scaled.mean(0))
    np.testing.assert_allclose(mv.variance, scaled.var(0, ddof=1))
    np.testing.assert_allclose(mv.variance, mv.mean, rtol=0.05)


def test_bad_input_raises_clear_errors():
    counts, library, _ = simulate_nb(50, [2.0, 3.0], [1.0, 1.0], seed=6)
    with pytest.raises(ValueError, match="non-integer"):
        fit_gene_models(np.log1p(counts.toarray()), library)
    with pytest.raises(ValueError, match="library"):
        fit_gene_models(counts, library[:-1])
    with pytest.raises(ValueError, match="Unknown count model"):
        fit_gene_models(counts, library, models=("gaussian",))
    with pytest.raises(ValueError, match="no counts"):
        fit_gene_models(sp.hstack([counts, sp.csr_matrix((50, 1))]), library)
    with pytest.raises(KeyError, match="zinb"):
        fit_gene_models(counts, library, models=("poisson",))["zinb"]
    with pytest.raises(ValueError, match="nested"):
        likelihood_ratio_test(fit_gene_models(counts, library, models=("poisson", "nb")), "nb", "poisson")
