"""Per-gene count models with a library-size offset: Poisson, negative binomial, zero-inflated NB.

The simplest generative model of a count matrix treats every gene on its own. Cell ``n`` was
sequenced to depth ``l_n`` (its library size, total UMIs) and gene ``g`` takes a fraction ``p_g``
of every cell's transcripts, so the expected count is

    mu_ng = l_n * p_g                                         (offset model; Grün et al. 2014)

and the three models differ only in the noise around that mean:

    Poisson   x_ng ~ Poisson(mu_ng)                            Var = mu
    NB        x_ng ~ NB(mu_ng, theta_g)                        Var = mu + mu^2 / theta_g
    ZINB      x_ng ~ pi_g * delta_0 + (1 - pi_g) * NB(mu_ng, theta_g)

The NB is the Gamma-Poisson mixture: biological variation of the rate between cells adds the
``mu^2 / theta`` term (Grün et al. 2014; Hafemeister & Satija 2019 fit ``theta_g`` per gene the same
way). ZINB adds a point mass at zero that droplet UMI data turn out not to need (Svensson 2020).
The models are nested: NB -> Poisson as ``theta -> inf`` and ZINB -> NB as ``pi -> 0``, so each
fitted likelihood is at least that of the simpler model.

Everything is vectorized over genes. Poisson has a closed-form MLE; NB and ZINB are fitted by a
damped Newton method on all genes at once, each gene's 2 or 3 parameters with their own gradient
and Hessian in closed form (checked against autograd in the tests). Newton-type updates are how
per-gene NB models are usually fitted (``MASS::glm.nb``, DESeq2, sctransform's ``theta.ml``); they
converge in 5-20 steps where Adam needs thousands. The reported log-likelihoods are evaluated
with :func:`genailab_core.distributions.log_nb` / ``log_zinb``.

The modules: :mod:`.likelihood` (the counts as non-zeros and the per-gene objective), :mod:`.newton`
(closed-form derivatives and the damped Newton optimizer), :mod:`.fits` (``fit_gene_models`` and its
results), :mod:`.diagnostics` (zero rates, mean-variance, likelihood ratio test, preferred model).
"""
from __future__ import annotations

from .diagnostics import (
    LikelihoodRatioTest,
    MeanVariance,
    expected_zero_rate,
    likelihood_ratio_test,
    nb_variance,
    normalized_mean_variance,
    observed_zero_rate,
    preferred_model,
    zero_probability,
)
from .fits import MODELS, CountModelFit, GeneFits, fit_gene_models

__all__ = ["MODELS", "CountModelFit", "GeneFits", "LikelihoodRatioTest", "MeanVariance", "expected_zero_rate",
           "fit_gene_models", "likelihood_ratio_test", "nb_variance", "normalized_mean_variance",
           "observed_zero_rate", "preferred_model", "zero_probability"]
