"""Counterfactual metrics (chapter 3; scGen's protocol, Lotfollahi et al. 2019)."""
from __future__ import annotations

import numpy as np

from ._arrays import as_dense


def mean_expression_r2(real, predicted, genes=None) -> float:
    """R^2 of per-gene mean expression, scGen's score: the squared Pearson correlation of the
    real and predicted per-gene means (the R^2 of a least-squares line through them).

    real: (cells_r, genes) and predicted: (cells_p, genes) on the same scale (log-normalized);
    the numbers of cells may differ. genes: None (all), integer indices or a boolean mask
    selecting the genes to score (e.g. the top-100 DE genes).
    """
    real_mean, predicted_mean = as_dense(real).mean(0), as_dense(predicted).mean(0)   # (genes,) each
    if real_mean.shape != predicted_mean.shape:
        raise ValueError(f"real has {real_mean.shape[0]} genes but predicted has {predicted_mean.shape[0]}.")
    if genes is not None:
        real_mean, predicted_mean = real_mean[np.asarray(genes)], predicted_mean[np.asarray(genes)]
    if real_mean.size < 2 or real_mean.std() == 0 or predicted_mean.std() == 0:
        raise ValueError("R^2 needs at least 2 genes whose means vary, in both real and predicted.")
    return float(np.corrcoef(real_mean, predicted_mean)[0, 1] ** 2)


def top_de_genes(adata, groupby: str, group: str, reference: str, n_genes: int = 100,
                 layer: str | None = "log1p", method: str = "wilcoxon", both_directions: bool = False) -> list[str]:
    """The ``n_genes`` top differentially expressed genes of ``group`` vs ``reference`` in
    ``adata.obs[groupby]`` by scanpy's ``rank_genes_groups`` score on the log-normalized ``layer``
    (None: ``.X``): the most up-regulated, as scGen's evaluation takes scanpy's ranking, or with
    ``both_directions`` the largest |score|, up or down.

    Compute it on the genes the model sees (after HVG selection), so every DE gene is scored.
    """
    import scanpy as sc

    if groupby not in adata.obs or not {group, reference} <= set(adata.obs[groupby].astype(str)):
        raise ValueError(f"adata.obs[{groupby!r}] must contain both {group!r} and {reference!r}.")
    result = sc.tl.rank_genes_groups(adata, groupby, groups=[group], reference=reference, method=method,
                                     layer=layer, use_raw=False, copy=True)
    table = sc.get.rank_genes_groups_df(result, group)
    scores = table["scores"].to_numpy()
    order = np.argsort(-(np.abs(scores) if both_directions else scores), kind="stable")
    return table["names"].to_numpy()[order][:n_genes].tolist()


