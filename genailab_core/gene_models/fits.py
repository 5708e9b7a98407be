"""Per-gene maximum-likelihood fits of the nested Poisson, NB and ZINB models, and their results."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .likelihood import _log_prob_zero, _prepare, _reference_loglik, _SparseCounts
from .newton import _newton

MODELS = ("poisson", "nb", "zinb")
N_PARAMS = {"poisson": 1, "nb": 2, "zinb": 3}
LOG_THETA_RANGE = (np.log(1e-6), np.log(1e8))   # NB beyond theta = 1e8 is numerically the Poisson
ZI_LOGIT_RANGE = (-15.0, 15.0)           # pi from 3e-7 to 1 - 3e-7


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class CountModelFit:
    """Maximum-likelihood fit of one count model to every gene. All arrays are (genes,).

    p: expression fraction, ``mu_ng = l_n * p_g``.
    theta: NB inverse dispersion (``inf`` = Poisson: for the Poisson model, and for NB genes whose
        likelihood is maximized at the Poisson limit).
    pi: zero-inflation probability (0 for Poisson and NB).
    loglik: maximized log-likelihood summed over cells, in nats.
    converged: whether the optimizer met its tolerance for that gene (always True for Poisson).
    """

    model: str
    p: np.ndarray
    theta: np.ndarray
    pi: np.ndarray
    loglik: np.ndarray
    converged: np.ndarray

    @property
    def n_params(self) -> int:
        """Free parameters per gene: 1 (Poisson), 2 (NB), 3 (ZINB)."""
        return N_PARAMS[self.model]

    @property
    def aic(self) -> np.ndarray:
        """Akaike information criterion per gene, ``2 k - 2 log L``: (genes,)."""
        return 2.0 * self.n_params - 2.0 * self.loglik


@dataclass
class GeneFits:
    """Per-gene fits of the count models; ``fits["nb"]`` is the NB fit. None = not fitted."""

    n_cells: int
    poisson: CountModelFit | None = None
    nb: CountModelFit | None = None
    zinb: CountModelFit | None = None

    @property
    def models(self) -> tuple[str, ...]:
        """The names of the fitted models, simplest first."""
        return tuple(name for name in MODELS if getattr(self, name) is not None)

    @property
    def n_genes(self) -> int:
        return len(self[self.models[0]].p)

    def __getitem__(self, model: str) -> CountModelFit:
        fit = getattr(self, model, None) if model in MODELS else None
        if fit is None:
            raise KeyError(f"No {model!r} fit; the fitted models are {self.models}. Pass "
                           f"models=(..., {model!r}) to fit_gene_models to fit it.")
        return fit


def _moment_theta(data: _SparseCounts, p: torch.Tensor) -> torch.Tensor:
    """Method-of-moments theta from E[(x - mu)^2 - x] = mu^2 / theta, clipped to a sane range: (genes,)."""
    g = data.cols
    mu_nz = data.library[data.rows] * p[g]
    sum_x2_minus_2xmu_minus_x = torch.zeros_like(p).index_add(0, g, data.values ** 2 - 2 * data.values * mu_nz
                                                              - data.values)
    sum_mu2 = p ** 2 * (data.library ** 2).sum()
    excess = sum_x2_minus_2xmu_minus_x + sum_mu2                                  # sum (x - mu)^2 - x
    theta = torch.where(excess > 0, sum_mu2 / excess, torch.full_like(p, 1e4))
    return theta.clamp(1e-2, 1e4)


def _fit_poisson(data: _SparseCounts) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form MLE p_g = sum_n x_ng / sum_n l_n and its log-likelihood: (genes,), (genes,)."""
    totals = torch.zeros(data.n_genes, dtype=data.values.dtype).index_add(0, data.cols, data.values)
    p = totals / data.library.sum()
    return p, _reference_loglik(data, p)


def _fit_nb(data: _SparseCounts, p0: torch.Tensor, steps: int, gtol: float):
    """NB MLE of (log p_g, log theta_g), started from the Poisson p and the moment theta."""
    start = torch.stack([p0.log(), _moment_theta(data, p0).log()])
    params, converged = _newton(data, start, steps, gtol, [(-np.inf, np.inf), LOG_THETA_RANGE])
    p, theta = params[0].exp(), params[1].exp()
    return p, theta, _reference_loglik(data, p, theta), converged


def _fit_zinb(data: _SparseCounts, p_nb: torch.Tensor, theta_nb: torch.Tensor, steps: int, gtol: float):
    """ZINB MLE of (log p_g, log theta_g, logit pi_g), started from the NB fit and the excess zeros."""
    observed = 1.0 - torch.bincount(data.cols, minlength=data.n_genes).to(p_nb.dtype) / data.n_cells
    expected = _log_prob_zero(data.library[:, None] * p_nb, theta_nb, None).exp().mean(0)
    pi0 = ((observed - expected) / (1.0 - expected).clamp_min(1e-6)).clamp(1e-4, 0.9)   # excess zeros
    start = torch.stack([p_nb.log(), theta_nb.log(), torch.logit(pi0)])
    params, converged = _newton(data, start, steps, gtol, [(-np.inf, np.inf), LOG_THETA_RANGE, ZI_LOGIT_RANGE])
    p, theta = params[0].exp(), params[1].exp()
    return p, theta, torch.sigmoid(params[2]), _reference_loglik(data, p, theta, params[2]), converged


def fit_gene_models(counts, library=None, models: tuple[str, ...] = MODELS, steps: int = 100,
                    gtol: float = 1e-5, dtype: torch.dtype = torch.float64, threads: int | None = 1) -> GeneFits:
    """Fit Poisson, NB and/or ZINB to every gene by maximum likelihood, with ``mu_ng = l_n p_g``.

    counts: (cells, genes) raw integer counts (numpy, scipy.sparse or torch), e.g. ``adata.X``.
    library: (cells,) library sizes ``l_n`` (total counts over *all* genes, e.g.
        ``adata.obs["library_size"]``); None = row sums of ``counts``.
    models: any of "poisson", "nb", "zinb".
    steps: maximum Newton iterations for NB and ZINB (each gene usually converges in 5-20).
    gtol: a gene has converged when every |d log L / d parameter| per cell is below ``gtol``.
    dtype: float64 by default; the lgamma differences of large-theta genes need it.
    threads: torch CPU threads during the fit (None = leave torch's setting). The work is many
        short elementwise passes, for which one thread is nearly as fast on an idle machine and
        several times faster on a shared one (threads wait for each other at every pass).

    Nesting is enforced gene by gene: where the NB optimum lies at ``theta -> inf`` (no
    overdispersion) the NB fit is the Poisson fit with ``theta = inf``; where ZINB's lies at
    ``pi -> 0`` it is the NB fit with ``pi = 0``. So ``loglik`` never decreases from Poisson to NB
    to ZINB, as it must for maximum likelihood on nested models.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"Unknown count model(s) {unknown or models}; choose from {MODELS}.")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit_all(_prepare(counts, library, dtype), models, steps, gtol)
    finally:
        torch.set_num_threads(previous_threads)


def _fit_all(data: _SparseCounts, models: tuple[str, ...], steps: int, gtol: float) -> GeneFits:
    """Poisson in closed form, then NB from Poisson, then ZINB from NB, keeping the requested fits."""
    n = data.n_cells
    out = GeneFits(n_cells=n)
    p_pois, ll_pois = _fit_poisson(data)
    inf, zeros = torch.full_like(p_pois, np.inf), torch.zeros_like(p_pois)
    all_true = torch.ones_like(p_pois, dtype=torch.bool)
    if "poisson" in models:
        out.poisson = _as_fit("poisson", p_pois, inf, zeros, ll_pois, all_true)
    if "nb" not in models and "zinb" not in models:
        return out
    p_nb, theta_nb, ll_nb, conv_nb = _fit_nb(data, p_pois, steps, gtol * n)
    poisson_better = ll_pois >= ll_nb                                             # optimum at theta = inf
    p_nb = torch.where(poisson_better, p_pois, p_nb)
    theta_nb = torch.where(poisson_better, inf, theta_nb)
    ll_nb = torch.maximum(ll_nb, ll_pois)
    conv_nb = conv_nb | poisson_better
    if "nb" in models:
        out.nb = _as_fit("nb", p_nb, theta_nb, zeros, ll_nb, conv_nb)
    if "zinb" in models:
        finite_theta = torch.where(torch.isinf(theta_nb), torch.full_like(theta_nb, 1e6), theta_nb)
        p_zi, theta_zi, pi, ll_zi, conv_zi = _fit_zinb(data, p_nb, finite_theta, steps, gtol * n)
        nb_better = ll_nb >= ll_zi                                                # optimum at pi = 0
        out.zinb = _as_fit("zinb", torch.where(nb_better, p_nb, p_zi), torch.where(nb_better, theta_nb, theta_zi),
                           torch.where(nb_better, zeros, pi), torch.maximum(ll_zi, ll_nb), conv_zi | nb_better)
    return out


def _as_fit(model, p, theta, pi, loglik, converged) -> CountModelFit:
    def arr(t):
        return t.detach().cpu().numpy()
    return CountModelFit(model=model, p=arr(p), theta=arr(theta), pi=arr(pi), loglik=arr(loglik),
                         converged=arr(converged).astype(bool))
