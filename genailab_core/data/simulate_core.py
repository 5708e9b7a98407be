"""The generative model all simulators share: log-frequencies ``eta`` -> library sizes -> NB counts.

A cell ``c`` with library size ``l_c ~ LogNormal(library_log_mean, library_log_sd)`` expresses gene
``g`` with frequency ``rho_cg = softmax_g(eta_cg)`` and its count is
``x_cg ~ NB(mean = l_c * rho_cg, inverse dispersion = theta_g)``, drawn by the package's one NB
sampler, :meth:`genailab_core.distributions.NegativeBinomial.sample`. The simulators
(:mod:`.simulate_cells`, :mod:`.simulate_screen`) differ only in how they build ``eta``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..distributions import NegativeBinomial
from .preprocess import row_sums


def sample_negative_binomial(rng: np.random.Generator, mu: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """Draw NB counts with mean ``mu`` and inverse dispersion ``theta`` from a numpy Generator.

    mu: (cells, genes) means >= 0, float32 or float64 (the draws use the same precision);
    theta: scalar or (genes,) > 0. Returns int64 counts, same shape as mu.

    The draws are those of :class:`~genailab_core.distributions.NegativeBinomial` (Gamma-Poisson),
    on torch's CPU generator seeded from ``rng`` inside :func:`torch.random.fork_rng`: the same
    ``rng`` state gives the same counts, and torch's global random state is left as it was.
    """
    dtype = np.float32 if np.asarray(mu).dtype == np.float32 else np.float64
    mu_t = torch.from_numpy(np.require(mu, dtype=dtype, requirements=["W"]))
    theta_t = torch.as_tensor(np.asarray(theta, dtype=dtype))
    seed = int(rng.integers(2**63))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        counts = NegativeBinomial(mu_t, theta_t, validate_args=False).sample()
    return counts.numpy().astype(np.int64)


def _softmax_rows(eta: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in place: eta (cells, genes) becomes frequencies summing to 1 per cell."""
    shifted = eta
    shifted -= eta.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _log_softmax(eta: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of eta: (..., genes)."""
    shifted = eta - eta.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sparse_normal(rng: np.random.Generator, shape: tuple[int, ...], fraction: float, sd: float) -> np.ndarray:
    """Effects that are N(0, sd) on a random ``fraction`` of entries and 0 elsewhere."""
    return (rng.random(shape) < fraction) * rng.normal(0.0, sd, size=shape)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not np.all(np.asarray(value) > 0):
            raise ValueError(f"{name} must be > 0, got {value}.")


def _gene_dispersion(dispersion: float | np.ndarray, n_genes: int) -> np.ndarray:
    theta = np.broadcast_to(np.asarray(dispersion, dtype=np.float64), (n_genes,)).copy()
    _check_positive(dispersion=theta)
    return theta


def _start(seed: int, dispersion: float | np.ndarray, n_genes: int, baseline_sd: float):
    """The seeded Generator, the per-gene dispersion theta (genes,) and baselines ``a_g ~ N(0, baseline_sd)``."""
    rng = np.random.default_rng(seed)
    theta = _gene_dispersion(dispersion, n_genes)
    return rng, theta, rng.normal(0.0, baseline_sd, size=n_genes)


def _labels(prefix: str, codes: np.ndarray, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}_{i}" for i in range(n)])


def _gene_names(n_genes: int) -> pd.Index:
    width = len(str(n_genes - 1))
    return pd.Index([f"gene_{i:0{width}d}" for i in range(n_genes)])


def _sample_cells(
    rng: np.random.Generator,
    eta: np.ndarray,
    theta: np.ndarray,
    library_log_mean: float,
    library_log_sd: float,
    store_means: bool,
) -> tuple[sp.csr_matrix, np.ndarray, dict[str, np.ndarray]]:
    """Library sizes, means and NB counts for log-frequencies eta: (cells, genes), float32.

    eta is overwritten (it becomes mu) to keep one (cells, genes) array in memory.
    """
    size_factor = rng.lognormal(library_log_mean, library_log_sd, size=eta.shape[0])
    mu = _softmax_rows(eta)
    mu *= size_factor[:, None].astype(eta.dtype)  # (cells, genes) NB means
    counts = sp.csr_matrix(sample_negative_binomial(rng, mu, theta)).astype(np.float32)
    layers = {"mu": mu.astype(np.float32)} if store_means else {}
    return counts, size_factor, layers


def _simulated_anndata(
    rng: np.random.Generator,
    eta: np.ndarray,
    theta: np.ndarray,
    library: tuple[float, float],
    store_means: bool,
    obs: dict,
    var_names: pd.Index,
    truth: dict,
    dataset: str,
) -> ad.AnnData:
    """Draw the counts for log-frequencies eta (cells, genes) and wrap them with their labels and truth.

    library: (library_log_mean, library_log_sd). obs: the simulator's per-cell columns; ``size_factor``
    (l_c) and ``library_size`` (observed total) are appended, and cells are named ``cell_0``, ...
    """
    counts, size_factor, layers = _sample_cells(rng, eta, theta, *library, store_means)
    frame = pd.DataFrame(obs, index=[f"cell_{i}" for i in range(counts.shape[0])])
    frame["size_factor"] = size_factor
    frame["library_size"] = row_sums(counts)
    adata = ad.AnnData(X=counts, obs=frame, var=pd.DataFrame(index=var_names), layers=layers)
    adata.uns["ground_truth"] = truth
    adata.uns["dataset"] = dataset
    return adata
