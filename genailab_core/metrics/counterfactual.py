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


def split_half_r2(real, genes=None, n_splits: int = 20, seed: int = 0) -> tuple[float, float]:
    """The real-data ceiling of :func:`mean_expression_r2`: the R^2 that a perfect prediction (the true
    per-gene means, without noise) would reach against these real cells, estimated from the cells
    themselves. (mean, s.d.) over ``n_splits`` random splits.

    Each split correlates the per-gene means of two random halves, r; the full set's means are twice
    as precise as a half's, so the Spearman-Brown formula gives their reliability, 2 r / (1 + r)
    (Spearman 1910; Brown 1910), which is the expected R^2 of the true means against the full set.
    A method near this value is as good as the real cells' own sampling noise lets anyone show.
    real: (cells, genes), at least 4 cells; genes as in :func:`mean_expression_r2`.
    """
    real = as_dense(real)
    if real.shape[0] < 4:
        raise ValueError(f"split_half_r2 needs at least 4 real cells to split in two; got {real.shape[0]}.")
    rng = np.random.default_rng(seed)
    half = real.shape[0] // 2
    ceilings = []
    for _ in range(n_splits):
        order = rng.permutation(real.shape[0])
        r = np.sqrt(mean_expression_r2(real[order[:half]], real[order[half:2 * half]], genes=genes))
        ceilings.append(2 * r / (1 + r))                                   # Spearman-Brown, doubled length
    return float(np.mean(ceilings)), float(np.std(ceilings, ddof=1)) if n_splits > 1 else float("nan")


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


