"""A count matrix as its non-zeros, and each gene's log-likelihood computed from that sparsity.

The objective that :mod:`.newton` maximizes: with ``mu_ng = l_n p_g``, the sum over all cells of
log P(0) (dense, one log1p per entry, in gene chunks) plus a correction at the non-zeros only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..data.preprocess import check_counts
from ..distributions import log_nb, log_zinb


@dataclass
class _SparseCounts:
    """A count matrix as its non-zero entries, plus the library sizes (torch, one dtype).

    ``pair_*`` list each distinct (gene, count value) once with its number of cells: the
    lgamma terms of the NB depend on the cell only through the count, so they are summed
    over distinct values (about 10x fewer than non-zeros in UMI data).
    """

    rows: torch.Tensor        # (nnz,) cell index of each non-zero
    cols: torch.Tensor        # (nnz,) gene index of each non-zero
    values: torch.Tensor      # (nnz,) the counts
    library: torch.Tensor     # (cells,)
    pair_gene: torch.Tensor   # (pairs,) gene of each distinct (gene, value)
    pair_value: torch.Tensor  # (pairs,) the value
    pair_cells: torch.Tensor  # (pairs,) how many cells of that gene have that value
    shape: tuple[int, int]    # (cells, genes)
    matrix: sp.csr_matrix | None  # (cells, genes) the counts, for the reference log-likelihoods

    @property
    def n_cells(self) -> int:
        return self.shape[0]

    @property
    def n_genes(self) -> int:
        return self.shape[1]


def _to_csr(counts) -> sp.csr_matrix:
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu()
        counts = counts.to_dense().numpy() if counts.is_sparse else counts.numpy()
    return sp.csr_matrix(counts)


def _prepare(counts, library, dtype: torch.dtype) -> _SparseCounts:
    """Validate counts (cells, genes) and library (cells,); keep the non-zeros as torch tensors."""
    check_counts(counts, what="counts")
    matrix = _to_csr(counts).astype(np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"counts must be a (cells, genes) matrix; got shape {matrix.shape}.")
    n_cells, n_genes = matrix.shape
    totals = np.asarray(matrix.sum(axis=0)).ravel()
    if (totals == 0).any():
        raise ValueError(f"{int((totals == 0).sum())} of {n_genes} genes have no counts in any cell, so their "
                         "MLE is p = 0 and no dispersion can be fitted; drop them first "
                         "(e.g. adata = adata[:, adata.X.sum(0).A1 > 0]).")
    if library is None:
        library = np.asarray(matrix.sum(axis=1)).ravel()
    library = np.asarray(library.detach().cpu() if isinstance(library, torch.Tensor) else library,
                         dtype=np.float64).ravel()
    if library.shape != (n_cells,):
        raise ValueError(f"library has {library.size} entries but counts has {n_cells} cells; pass one "
                         "library size per cell, e.g. adata.obs['library_size'].")
    if not np.all(np.isfinite(library)) or (library <= 0).any():
        raise ValueError("library sizes must be finite and positive; drop empty cells or pass "
                         "adata.obs['library_size'] (total counts over all genes).")
    coo = matrix.tocoo()
    coo.eliminate_zeros()
    pairs, pair_cells = np.unique(np.stack([coo.col, coo.data]), axis=1, return_counts=True)
    def t(array, kind=dtype):
        return torch.as_tensor(np.ascontiguousarray(array), dtype=kind)

    return _SparseCounts(rows=t(coo.row, torch.long), cols=t(coo.col, torch.long), values=t(coo.data),
                         library=t(library), pair_gene=t(pairs[0], torch.long), pair_value=t(pairs[1]),
                         pair_cells=t(pair_cells), shape=matrix.shape, matrix=matrix.tocsr())


# ----------------------------------------------------------------------------------------------
# Log-likelihoods of a sparse count matrix
# ----------------------------------------------------------------------------------------------
def _log_prob_zero(mu: torch.Tensor, theta: torch.Tensor | None, zi_logits: torch.Tensor | None) -> torch.Tensor:
    """log P(x = 0) elementwise: Poisson ``-mu``; NB ``-theta log(1 + mu / theta)``; ZINB mixes in pi."""
    if theta is None:
        return -mu
    log_nb0 = -theta * torch.log1p(mu / theta)                                  # log ((theta/(theta+mu))^theta)
    if zi_logits is None:
        return log_nb0
    return torch.logaddexp(-F.softplus(-zi_logits), -F.softplus(zi_logits) + log_nb0)   # log(pi + (1-pi) NB(0))


def _chunks(n_genes: int, size: int):
    """Slices of at most ``size`` genes, to bound the memory of (cells, genes) temporaries."""
    return [slice(start, start + size) for start in range(0, n_genes, size)]


def _loglik_per_gene(data: _SparseCounts, p: torch.Tensor, theta: torch.Tensor | None = None,
                     zi_logits: torch.Tensor | None = None, chunk: int = 512) -> torch.Tensor:
    """sum_n log P(x_ng | mu_ng = l_n p_g, theta_g, pi_g): (genes,). The fitting objective.

    Equal to ``log_nb(x, mu, theta).sum(0)`` (or ``log_zinb``; Poisson when theta is None), computed
    from the sparsity of UMI data: sum over all cells of log P(0), plus for non-zeros only
        log P(x) - log P(0) = [lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)] + x log(mu / (theta + mu))
                              (+ log(1 - pi) + log NB(0) - log ZINB(0) for ZINB),
    with the bracket summed over distinct (gene, x) pairs. Dense work is one log1p per entry.
    """
    every_cell = torch.empty_like(p)                                             # (genes,)
    for cols in _chunks(len(p), chunk):                                          # (cells, chunk) at a time
        every_cell[cols] = _log_prob_zero(data.library[:, None] * p[cols], None if theta is None else theta[cols],
                                          None if zi_logits is None else zi_logits[cols]).sum(0)
    g, x = data.cols, data.values
    mu_nz = data.library[data.rows] * p[g]                                       # (nnz,)
    per_gene = torch.zeros_like(p)
    if theta is None:                                                            # Poisson
        correction = x * torch.log(mu_nz) - torch.lgamma(x + 1.0)
        return every_cell + per_gene.index_add(0, g, correction)
    th_nz = theta[g]
    correction = x * (torch.log(mu_nz) - torch.log(th_nz + mu_nz))
    if zi_logits is not None:
        zi_nz = zi_logits[g]
        correction = (correction - F.softplus(zi_nz) + _log_prob_zero(mu_nz, th_nz, None)
                      - _log_prob_zero(mu_nz, th_nz, zi_nz))
    th_pair, v = theta[data.pair_gene], data.pair_value
    lgamma_terms = data.pair_cells * (torch.lgamma(v + th_pair) - torch.lgamma(th_pair) - torch.lgamma(v + 1.0))
    return every_cell + per_gene.index_add(0, g, correction).index_add(0, data.pair_gene, lgamma_terms)


def _reference_loglik(data: _SparseCounts, p: torch.Tensor, theta: torch.Tensor | None = None,
                      zi_logits: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """The same sum evaluated densely with ``log_nb`` / ``log_zinb`` (torch's Poisson for theta None)."""
    out = torch.empty_like(p)
    for cols in _chunks(data.n_genes, chunk):
        x = torch.as_tensor(data.matrix[:, cols].toarray(), dtype=p.dtype)     # (cells, chunk)
        mu = data.library[:, None] * p[cols]
        if theta is None:
            log_p = torch.distributions.Poisson(mu).log_prob(x)
        elif zi_logits is None:
            log_p = log_nb(x, mu, theta[cols])
        else:
            log_p = log_zinb(x, mu, theta[cols], zi_logits[cols])
        out[cols] = log_p.sum(0)
    return out
