"""Cells in principal-component space, the space Part III's generators of expression work in.

Diffusion and flow models of Part III generate log-normalized expression through its first principal
components (torchcfm's single-cell examples work in whitened PCs too): a few dozen
continuous, roughly Gaussian coordinates instead of thousands of sparse genes. Everything that shapes the
space is fitted on the training cells only: the highly variable genes (seurat_v3 on counts), the PCA, and
one scale factor, so that held-out cells are new to it, as a generator's test cells must be.
"""
from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .preprocess import log_normalize, select_hvg
from .splits import CellSplit, split_cells


@dataclass
class PCSpace:
    """Cells as scaled principal components of their log-normalized expression.

    train, held_out: (cells, n_pcs) float32, the PCs divided by ``scale`` (one number: the training cells'
    root-mean variance per PC, so the average PC has variance 1, the scale of N(0, I) noise, while the PCs
    keep their relative sizes and the geometry an OT cost sees). obs_train, obs_held_out: those cells' obs.
    genes: the modelled genes. components: (n_pcs, genes); mean: (genes,), the PCA's.
    """

    train: np.ndarray
    held_out: np.ndarray
    obs_train: pd.DataFrame
    obs_held_out: pd.DataFrame
    genes: list[str]
    components: np.ndarray
    mean: np.ndarray
    scale: float
    split: CellSplit

    @property
    def n_pcs(self) -> int:
        return self.train.shape[1]

    def to_pcs(self, expression) -> np.ndarray:
        """Log-normalized expression (cells, genes) of ``genes`` -> scaled PCs (cells, n_pcs)."""
        expression = np.asarray(expression.toarray() if hasattr(expression, "toarray") else expression, np.float64)
        if expression.ndim != 2 or expression.shape[1] != len(self.genes):
            raise ValueError(f"Expected (cells, {len(self.genes)}) log-normalized expression of this space's genes, "
                             f"got {expression.shape}; subset to PCSpace.genes first.")
        return (((expression - self.mean) @ self.components.T) / self.scale).astype(np.float32)

    def to_expression(self, pcs) -> np.ndarray:
        """Scaled PCs (cells, n_pcs) -> the log-normalized expression they reconstruct (cells, genes): the
        projection onto the PCs' span, so genes' variation outside the first n_pcs components is not restored."""
        pcs = np.asarray(pcs, dtype=np.float64)
        if pcs.ndim != 2 or pcs.shape[1] != self.n_pcs:
            raise ValueError(f"Expected (cells, {self.n_pcs}) scaled PCs, got {pcs.shape}.")
        return pcs * self.scale @ self.components + self.mean


def expression_pcs(adata: ad.AnnData, n_pcs: int = 50, n_top_genes: int = 2000, held_out_fraction: float = 0.1,
                   seed: int = 0, stratify: str | None = None) -> PCSpace:
    """Split the cells, choose the HVGs and fit the PCA on the training cells; return both sets as scaled PCs.

    adata: raw counts in ``.X`` (e.g. ``load_pbmc3k()``). stratify: an obs column whose shares the split keeps
    (e.g. "cell_type"). The held-out cells (``held_out_fraction``) are what generated cells are scored on.
    """
    from sklearn.decomposition import PCA

    if not 1 <= n_pcs <= min(adata.n_vars, n_top_genes):
        raise ValueError(f"n_pcs must be between 1 and the number of genes ({min(adata.n_vars, n_top_genes)}), "
                         f"got {n_pcs}.")
    labels = adata.obs[stratify].to_numpy() if stratify else None
    split = split_cells(adata.n_obs, val_fraction=held_out_fraction, seed=seed, stratify=labels)
    genes = select_hvg(adata, n_top_genes=n_top_genes, flavor="seurat_v3", fit_on=split.train)
    log_normalize(genes)
    values = genes.layers["log1p"]
    values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    pca = PCA(n_components=n_pcs, random_state=seed).fit(values[split.train])
    train = pca.transform(values[split.train])
    scale = float(np.sqrt(train.var(0).mean()))
    return PCSpace(train=(train / scale).astype(np.float32),
                   held_out=(pca.transform(values[split.val]) / scale).astype(np.float32),
                   obs_train=adata.obs.iloc[split.train].copy(), obs_held_out=adata.obs.iloc[split.val].copy(),
                   genes=list(genes.var_names), components=pca.components_.copy(), mean=pca.mean_.copy(),
                   scale=scale, split=split)
