"""Count-matrix checks and the few preprocessing steps the chapters share.

Thin wrappers over scanpy: quality filters, library size, highly variable genes computed on
raw counts (``flavor="seurat_v3"``, Stuart et al. 2019), and log-normalization into a layer so
that ``.X`` keeps the counts every count likelihood needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def _stored_values(x) -> np.ndarray:
    """The stored values of ``x`` as a numpy array (non-zeros only for sparse input).

    Accepts numpy arrays, scipy.sparse matrices, torch tensors (dense or sparse) and pandas objects.
    """
    if sp.issparse(x):
        return np.asarray(x.data)
    if type(x).__module__.startswith("torch"):
        tensor = x.detach()
        if tensor.is_sparse:
            tensor = tensor.coalesce().values()
        return tensor.cpu().numpy()
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return x.to_numpy()
    return np.asarray(x)


def check_counts(x, what: str = "counts") -> None:
    """Raise ValueError unless ``x`` holds finite, non-negative whole numbers.

    x: (cells, genes) numpy array, scipy.sparse matrix or torch tensor.
    what: the name used in the message (e.g. ``"adata.X"``).
    The message names the problem and the fix: count likelihoods (Poisson, NB, ZINB) are
    defined on raw integer counts, not on log-normalized or scaled values.
    """
    values = _stored_values(x)
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise ValueError(f"{what} has dtype {values.dtype}; pass a numeric matrix of raw integer counts.")
    if np.issubdtype(values.dtype, np.integer):
        if values.min() < 0:
            raise ValueError(f"{what} has negative values (min {values.min()}); counts are >= 0. Pass raw counts.")
        return
    finite = np.isfinite(values)
    if not finite.all():
        n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        raise ValueError(
            f"{what} has {n_nan} NaN and {n_inf} infinite values; counts must be finite. Remove or fix those "
            "cells/genes, or pass the raw integer counts, e.g. adata.layers['counts']."
        )
    minimum = values.min()
    if minimum < 0:
        raise ValueError(
            f"{what} has negative values (min {minimum:.4g}); it looks scaled or centered (e.g. sc.pp.scale). "
            "Pass raw integer counts, e.g. adata.layers['counts']."
        )
    fractional = np.abs(values - np.round(values)) > 1e-6
    if fractional.any():
        example = float(values[fractional][0])
        kind = "log-normalized" if values.max() < 30 else "normalized (e.g. CPM or size-factor scaled)"
        raise ValueError(
            f"{what} has {int(fractional.sum())} non-integer values (e.g. {example:.4g}); it looks {kind}. "
            "Pass raw integer counts, e.g. adata.layers['counts']."
        )


def check_genes(var_names: Sequence[str], expected: Sequence[str]) -> None:
    """Raise ValueError unless ``var_names`` equals ``expected`` in content and order.

    Models trained on one gene list call this before scoring new data; the message says how
    many genes are missing, extra or reordered, and how to fix it.
    """
    given, wanted = pd.Index(var_names), pd.Index(expected)
    if given.equals(wanted):
        return
    missing = wanted.difference(given)
    extra = given.difference(wanted)
    if len(missing) or len(extra):
        raise ValueError(
            f"The genes do not match the expected {len(wanted)} genes: {len(missing)} missing "
            f"(e.g. {list(missing[:3])}), {len(extra)} extra (e.g. {list(extra[:3])}). Subset and reorder with "
            "adata[:, expected] (genes absent from the data must be added as zero columns or the model retrained)."
        )
    n_moved = int((given != wanted).sum()) if len(given) == len(wanted) else len(given)
    raise ValueError(
        f"The genes are the expected {len(wanted)} genes but {n_moved} are in a different order "
        f"(or duplicated). Reorder with adata[:, expected]."
    )


def row_sums(matrix) -> np.ndarray:
    """(rows,) float64 sums of a dense or sparse matrix, accumulated in float64.

    scipy's ``sum(axis=1, dtype=float64)`` accumulates float32 data in float32 and rounds
    totals above 2**24 (bulk libraries of tens of millions of reads), hence the cast first.
    """
    if sp.issparse(matrix):
        return np.asarray(matrix.astype(np.float64).sum(axis=1)).ravel()
    return np.asarray(matrix).sum(axis=1, dtype=np.float64)


def library_size(adata: ad.AnnData, layer: str | None = None) -> np.ndarray:
    """Total counts per cell: (cells,) float64 row sums of ``.X`` or ``.layers[layer]``."""
    return row_sums(adata.X if layer is None else adata.layers[layer])


def add_library_size(adata: ad.AnnData, layer: str | None = None) -> None:
    """Set ``obs['library_size']`` to the total counts per cell (in place)."""
    adata.obs["library_size"] = library_size(adata, layer)


def qc_filter(
    adata: ad.AnnData,
    min_genes: int = 200,
    min_cells: int = 3,
    max_pct_mito: float | None = None,
    mito_prefix: tuple[str, ...] = ("MT-", "mt-"),
) -> ad.AnnData:
    """Standard cell and gene filters; returns a filtered copy.

    min_genes: keep cells with at least this many detected genes.
    min_cells: keep genes detected in at least this many cells.
    max_pct_mito: drop cells whose share of mitochondrial counts (genes starting with
        ``mito_prefix``) exceeds this percentage; None skips the filter.
    """
    import scanpy as sc

    out = adata.copy()
    sc.pp.filter_cells(out, min_genes=min_genes)
    sc.pp.filter_genes(out, min_cells=min_cells)
    if max_pct_mito is not None:
        mito = out.var_names.str.startswith(mito_prefix)
        if not mito.any():
            raise ValueError(
                f"max_pct_mito={max_pct_mito} was given but no gene name starts with {mito_prefix}; pass the "
                "prefix of this organism's mitochondrial genes as mito_prefix, or max_pct_mito=None."
            )
        mito_counts = row_sums(out[:, mito].X)
        pct = 100.0 * mito_counts / np.maximum(library_size(out), 1.0)
        out.obs["pct_counts_mito"] = pct
        out = out[pct <= max_pct_mito].copy()
    return out


def select_hvg(
    adata: ad.AnnData,
    n_top_genes: int = 2000,
    flavor: str = "seurat_v3",
    batch_key: str | None = None,
    layer: str | None = None,
    span: float = 0.3,
    fit_on: np.ndarray | None = None,
) -> ad.AnnData:
    """Copy of ``adata`` restricted to the ``n_top_genes`` most variable genes, found on counts.

    flavor: ``"seurat_v3"`` (variance of counts after a loess mean-variance fit; Stuart et al.
        2019; needs the ``scikit-misc`` package) or ``"pearson_residuals"`` (variance of analytic
        Pearson residuals of an NB model; Lause et al. 2021).
    batch_key: obs column; genes are ranked within each batch and combined.
    layer: counts layer to use instead of ``.X``.
    span: share of genes in each loess window of ``seurat_v3``. When the loess fit is singular
        (few cells or genes, many tied means: scanpy issue #1504) it is refitted with wider spans, with a warning.
    fit_on: the cells (indices or a boolean mask) the genes are chosen on, e.g. the training cells of a
        split, so that held-out cells play no part in choosing what is modelled; every cell is returned.
        None chooses on all cells (transductive: held-out cells then help pick the genes).
    """
    counts = adata.X if layer is None else adata.layers[layer]
    check_counts(counts, what="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    n_top = min(n_top_genes, adata.n_vars)
    chosen_from = adata if fit_on is None else adata[np.asarray(fit_on)]
    if chosen_from.n_obs < 2:
        raise ValueError(f"fit_on selects {chosen_from.n_obs} cells; choosing variable genes needs at least 2.")
    table = _hvg_table(chosen_from, n_top, flavor, batch_key, layer, span)
    keep = np.asarray(table["highly_variable"], dtype=bool)
    out = adata[:, keep].copy()
    out.var["hvg_rank"] = np.asarray(table["highly_variable_rank"])[keep] if "highly_variable_rank" in table else np.nan
    return out


def _hvg_table(adata: ad.AnnData, n_top: int, flavor: str, batch_key: str | None, layer: str | None, span: float):
    """scanpy's table of variable genes (``highly_variable``, ``highly_variable_rank``) for ``flavor``."""
    import scanpy as sc

    if flavor == "seurat_v3":
        try:
            import skmisc.loess  # noqa: F401  (scanpy's seurat_v3 needs it)
        except ImportError as err:
            raise ImportError(
                "select_hvg(flavor='seurat_v3') needs the scikit-misc package: pip install scikit-misc. "
                "Or use flavor='pearson_residuals', which needs nothing extra."
            ) from err
        return _seurat_v3_table(adata, n_top, batch_key, layer, span)
    if flavor == "pearson_residuals":
        return sc.experimental.pp.highly_variable_genes(adata, n_top_genes=n_top, batch_key=batch_key, layer=layer,
                                                         inplace=False)
    raise ValueError(f"Unknown flavor {flavor!r}; use 'seurat_v3' or 'pearson_residuals'.")


SINGULAR_LOESS = ("singularit", "reciprocal condition number")   # what skmisc's loess says when it is singular


def _seurat_v3_table(adata: ad.AnnData, n_top: int, batch_key: str | None, layer: str | None, span: float):
    """scanpy's seurat_v3 table. A singular loess fit (few cells or genes, many tied means: scanpy issue #1504)
    is refitted with a wider window, span + 0.05, + 0.1, then 0.5, with a warning; wider spans cost more time."""
    import warnings

    import scanpy as sc

    spans = [span] + [s for s in (span + 0.05, span + 0.1, 0.5) if s > span]
    for attempt, current in enumerate(spans):
        try:
            return sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat_v3", batch_key=batch_key,
                                               layer=layer, span=current, inplace=False)
        except ValueError as err:
            if not any(text in str(err) for text in SINGULAR_LOESS) or attempt == len(spans) - 1:
                raise
            warnings.warn(f"seurat_v3's loess fit was singular at span={current:.2f} ({err}); refitting with "
                          f"span={spans[attempt + 1]:.2f}.", stacklevel=3)


def log_normalize_counts(counts, library: np.ndarray | None = None, target_sum: float = 1e4):
    """log1p(target_sum * x / l) per cell, as scanpy's normalize_total + log1p, for any counts matrix.

    counts: (cells, genes) numpy array, scipy sparse matrix or torch tensor (e.g. counts a model
        generated), so real and generated counts go through the same transformation.
    library: (cells,) library sizes l; None uses the row sums. Pass ``obs["library_size"]`` when
        the matrix holds a subset of the genes the library was counted over (a gene panel).
    Returns CSR for sparse input, else a float64 array. A cell with l = 0 (no counts) stays 0.
    """
    if hasattr(counts, "detach"):
        counts = counts.detach().cpu().numpy()
    x = sp.csr_matrix(counts, dtype=np.float64) if sp.issparse(counts) else np.asarray(counts, dtype=np.float64)
    library = np.asarray(x.sum(1)).ravel() if library is None else np.asarray(library, dtype=np.float64)
    if library.shape != (x.shape[0],):
        raise ValueError(f"library has shape {library.shape}; expected one size per cell, ({x.shape[0]},).")
    scale = target_sum / np.where(library > 0, library, 1.0)                    # (cells,)
    if sp.issparse(x):
        y = sp.diags(scale) @ x
        y.data = np.log1p(y.data)
        return y.tocsr()
    return np.log1p(x * scale[:, None])


def log_normalize(
    adata: ad.AnnData,
    target_sum: float = 1e4,
    layer: str = "log1p",
    counts_layer: str | None = None,
) -> None:
    """Write ``log1p(target_sum * x / l)`` into ``adata.layers[layer]``; ``.X`` is untouched.

    l is each cell's total over the genes in ``adata`` (as scanpy's ``normalize_total``), so after an
    HVG cut it is the HVG total; use ``log_normalize_counts(x, library=obs["library_size"])`` to
    divide by a whole-transcriptome total instead. The values are :func:`log_normalize_counts`'s (one
    log-normalization for the package), stored in the counts' float precision as scanpy would.
    counts_layer: layer holding the counts (default ``.X``).
    """
    counts = adata.X if counts_layer is None else adata.layers[counts_layer]
    values = log_normalize_counts(counts, target_sum=target_sum)
    dtype = counts.dtype if np.issubdtype(counts.dtype, np.floating) else np.float32
    adata.layers[layer] = values.astype(dtype)
