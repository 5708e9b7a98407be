"""Views of a cell that respect its counts: the augmentations of a joint-embedding model (chapter 14).

An image model makes two views of a picture by cropping and colour jitter; those operations mean nothing for
a vector of UMI counts. Two operations do, because they are what the measurement itself does to a cell:

- **binomial thinning** keeps each UMI independently with probability p, x'_g ~ Binomial(x_g, p). It is
  exactly a second, shallower sequencing of the same library: if x_g ~ Poisson(l rho_g) then
  x'_g ~ Poisson(p l rho_g) (Poisson thinning), and the NB is closed under it too. Counts stay integers and
  E[sum_g x'_g] = p sum_g x_g.
- **masking gene programs** zeroes every gene of a few co-expressed modules (``models.tokens.gene_programs``
  with Ward linkage), so the
  model must infer them from the rest of the cell: the analogue of I-JEPA's masked image blocks
  (Assran et al. 2023).

The encoder then reads :func:`log_normalized` of the view, computed from the view's own counts, so depth
enters the input honestly. x: (batch, genes) non-negative integer counts, as float tensors.
"""
from __future__ import annotations

import numpy as np
import torch


def _check_counts(counts: torch.Tensor) -> None:
    if counts.dim() != 2:
        raise ValueError(f"counts must be a (cells, genes) matrix, got shape {tuple(counts.shape)}.")
    if (counts < 0).any() or not torch.equal(counts, counts.round()):
        raise ValueError("counts must be non-negative integers (raw UMI counts, not log-normalized values); "
                         "pass adata.X of a loader such as gl.data.load_pbmc3k().")


def binomial_thin(counts: torch.Tensor, p: float | torch.Tensor, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """x'_ng ~ Binomial(x_ng, p_n): each UMI kept with probability p_n, independently.

    counts: (cells, genes) integer counts (float dtype); p: a float or (cells,) keep probabilities in [0, 1].
    Returns (cells, genes) integer counts with E[x'] = p x (so E[library'] = p library). Only the non-zero
    entries are drawn (a zero stays zero), which is what makes this cheap on sparse single-cell data.
    """
    _check_counts(counts)
    p = torch.as_tensor(p, dtype=counts.dtype, device=counts.device)
    if p.dim() > 1 or (p.dim() == 1 and p.shape[0] != counts.shape[0]):
        raise ValueError(f"p must be a float or one probability per cell ({counts.shape[0]},), got shape "
                         f"{tuple(p.shape)}.")
    if ((p < 0) | (p > 1)).any() or not torch.isfinite(p).all():
        raise ValueError(f"keep probabilities p must lie in [0, 1], got values from {float(p.min())} to "
                         f"{float(p.max())}.")
    rows, cols = counts.nonzero(as_tuple=True)
    per_entry = p.expand(counts.shape[0])[rows] if p.dim() == 1 else p.expand(rows.shape[0])
    thinned = torch.zeros_like(counts)
    thinned[rows, cols] = torch.binomial(counts[rows, cols], per_entry.contiguous(), generator=generator)
    return thinned


def mask_programs(counts: torch.Tensor, programs: torch.Tensor, n_masked: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero all genes of ``n_masked`` gene programs, drawn at random for each cell.

    counts: (cells, genes); programs: (genes,) long program label of each gene, 0 .. n_programs - 1.
    Returns (masked counts (cells, genes), masked (cells, n_programs) float: 1 where the program was masked).
    """
    programs = torch.as_tensor(programs, device=counts.device).long()
    if programs.shape != (counts.shape[1],):
        raise ValueError(f"programs must give one label per gene ({counts.shape[1]},), got shape "
                         f"{tuple(programs.shape)}.")
    n_programs = int(programs.max()) + 1 if programs.numel() else 0
    if programs.min() < 0 or not 0 <= n_masked <= n_programs:
        raise ValueError(f"programs must be labels >= 0 and n_masked between 0 and the number of programs "
                         f"({n_programs}), got n_masked={n_masked}.")
    scores = torch.rand(counts.shape[0], n_programs, generator=generator, device=counts.device)
    chosen = scores.argsort(dim=1)[:, :n_masked]                                 # (cells, n_masked) programs
    masked = torch.zeros(counts.shape[0], n_programs, dtype=counts.dtype, device=counts.device)
    masked.scatter_(1, chosen, 1.0)
    keep = 1.0 - masked[:, programs]                                             # (cells, genes)
    return counts * keep, masked


def log_normalized(counts: torch.Tensor, target_sum: float = 1e4) -> torch.Tensor:
    """log1p(target_sum * x / l), l the cell's total over these genes (scanpy's normalize_total + log1p).

    counts: (cells, genes) -> (cells, genes). The torch twin of ``gl.data.log_normalize_counts``, for views made
    on the fly; a cell with no counts left stays 0.
    """
    library = counts.sum(1, keepdim=True)                                        # (cells, 1)
    return torch.log1p(counts * (target_sum / library.clamp_min(1.0)))
