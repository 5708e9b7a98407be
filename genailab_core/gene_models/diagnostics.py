"""What the fits predict and which model each gene needs: zero rates, mean-variance, LRT, AIC."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats

from ..data.preprocess import check_counts
from .fits import MODELS, N_PARAMS, GeneFits
from .likelihood import _chunks, _to_csr


@dataclass
class MeanVariance:
    """Per-gene mean and variance of counts scaled to a common depth. Arrays are (genes,)."""

    mean: np.ndarray
    variance: np.ndarray
    depth: float


@dataclass
class LikelihoodRatioTest:
    """Per-gene likelihood ratio test of a nested model against a richer one. Arrays are (genes,)."""

    statistic: np.ndarray
    pvalue: np.ndarray
    null: str
    alternative: str


# ----------------------------------------------------------------------------------------------
# What the fits predict
# ----------------------------------------------------------------------------------------------
def zero_probability(mu, theta=np.inf, pi=0.0) -> np.ndarray:
    """P(x = 0) elementwise (numpy broadcasting), one formula for the three nested models.

    Poisson (theta = inf, pi = 0): exp(-mu).
    NB: (theta / (theta + mu))^theta = exp(-theta log(1 + mu / theta)).
    ZINB: pi + (1 - pi) NB(0).
    """
    mu, theta, pi = np.broadcast_arrays(np.asarray(mu, float), np.asarray(theta, float), np.asarray(pi, float))
    with np.errstate(invalid="ignore", divide="ignore"):
        nb0 = np.where(np.isinf(theta), np.exp(-mu), np.exp(-theta * np.log1p(mu / theta)))
    return pi + (1.0 - pi) * nb0


def expected_zero_rate(fits: GeneFits, library, model: str) -> np.ndarray:
    """Mean over cells of P(x_ng = 0) under a fitted model: (genes,).

    library: (cells,) the library sizes the counts came with (the same as in the fit).
    """
    fit = fits[model]
    library = np.asarray(library, dtype=np.float64).ravel()
    rates = np.empty(len(fit.p))
    for cols in _chunks(len(fit.p), 512):                                         # bounded memory
        mu = library[:, None] * fit.p[cols]                                       # (cells, chunk)
        rates[cols] = zero_probability(mu, fit.theta[cols], fit.pi[cols]).mean(0)
    return rates


def observed_zero_rate(counts) -> np.ndarray:
    """Fraction of cells with a zero count, per gene: (genes,)."""
    matrix = _to_csr(counts)
    return 1.0 - matrix.getnnz(axis=0) / matrix.shape[0]


def nb_variance(mean, theta) -> np.ndarray:
    """NB variance ``mu + mu^2 / theta`` (the quadratic mean-variance law); theta = inf gives the Poisson."""
    mean = np.asarray(mean, dtype=float)
    return mean + mean ** 2 / np.asarray(theta, dtype=float)


def normalized_mean_variance(counts, library) -> MeanVariance:
    """Mean and variance per gene of counts scaled to a common depth ``D``: y_ng = x_ng D / l_n.

    D is the harmonic mean of the library sizes. With that choice the offset models predict
    exactly ``Var[y] = m`` (Poisson) and ``Var[y] = m + m^2 / theta`` (NB) with ``m = D p_g``:
    Var[y] = E_n[(D/l_n)^2 (l_n p + l_n^2 p^2 / theta)] = D^2 p E[1/l] + (D p)^2 / theta.
    counts: (cells, genes); library: (cells,).
    """
    check_counts(counts, what="counts")
    matrix = _to_csr(counts).astype(np.float64)
    library = np.asarray(library, dtype=np.float64).ravel()
    depth = 1.0 / np.mean(1.0 / library)
    scaled = sp.diags(depth / library) @ matrix
    mean = np.asarray(scaled.mean(axis=0)).ravel()
    mean_sq = np.asarray(scaled.multiply(scaled).mean(axis=0)).ravel()
    n = matrix.shape[0]
    return MeanVariance(mean=mean, variance=(mean_sq - mean ** 2) * n / (n - 1), depth=float(depth))


# ----------------------------------------------------------------------------------------------
# Which model does each gene need?
# ----------------------------------------------------------------------------------------------
def likelihood_ratio_test(fits: GeneFits, null: str = "poisson", alternative: str = "nb") -> LikelihoodRatioTest:
    """Per-gene LRT of a nested model, ``2 (log L_alt - log L_null)``.

    The extra parameter sits on the boundary under the null (theta = inf, or pi = 0), so the
    statistic follows the mixture 1/2 chi2_0 + 1/2 chi2_1 (Self & Liang 1987): p = chi2_1.sf(T) / 2.
    """
    order = {name: i for i, name in enumerate(MODELS)}
    if order.get(null, 9) >= order.get(alternative, -1) or alternative not in MODELS:
        raise ValueError(f"The null model must be nested in the alternative: got null={null!r}, "
                         f"alternative={alternative!r}; the nesting is {' < '.join(MODELS)}.")
    extra = N_PARAMS[alternative] - N_PARAMS[null]
    statistic = np.maximum(2.0 * (fits[alternative].loglik - fits[null].loglik), 0.0)
    pvalue = 0.5 * stats.chi2.sf(statistic, df=extra) if extra == 1 else stats.chi2.sf(statistic, df=extra)
    pvalue = np.where(statistic == 0, 1.0, pvalue)
    return LikelihoodRatioTest(statistic=statistic, pvalue=pvalue, null=null, alternative=alternative)


def preferred_model(fits: GeneFits) -> np.ndarray:
    """The model with the lowest AIC per gene (ties go to the simpler model): (genes,) of names."""
    names = fits.models
    aic = np.stack([fits[m].aic for m in names])                                  # (models, genes)
    return np.asarray(names)[np.argmin(aic, axis=0)]
