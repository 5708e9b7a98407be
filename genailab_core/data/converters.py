"""Converters: an upstream file (as downloaded) -> the placed file a loader reads.

Only conversions that are short and need nothing beyond the package's dependencies (plus
``rdata`` for an R .rds) live here; the catalog (:mod:`.catalog`) attaches them to the
:class:`~.registry.DataFile` they build, and :func:`~.registry.download_file` runs them.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .registry import Converter, DataNotFoundError


def _extract_tar_member(member: str) -> Converter:
    """Converter that copies one member out of a .tar.gz archive."""

    def convert(archive: Path, target: Path) -> None:
        with tarfile.open(archive, "r:gz") as tar:
            source = tar.extractfile(member)
            if source is None:
                raise DataNotFoundError(f"The archive {archive} has no file {member!r}.")
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out)

    return convert


def convert_10x_tarball(archive: Path, target: Path) -> None:
    """10x ``pbmc3k_filtered_gene_bc_matrices.tar.gz`` -> ``pbmc3k_raw.h5ad``.

    Reads the MatrixMarket triplet with ``scanpy.read_10x_mtx`` (gene symbols made unique,
    Ensembl ids in ``var['gene_ids']``), the layout of scanpy's ``pbmc3k_raw.h5ad``.
    """
    import scanpy as sc

    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp, filter="data")
        matrix_dirs = sorted(p.parent for p in Path(tmp).rglob("matrix.mtx*"))
        if not matrix_dirs:
            raise DataNotFoundError(f"The archive {archive} holds no matrix.mtx; is it a 10x matrix archive?")
        adata = sc.read_10x_mtx(matrix_dirs[0], var_names="gene_symbols", make_unique=True)
    adata.X = adata.X.tocsr().astype("float32")
    adata.write_h5ad(target, compression="gzip")


def convert_rcppml_meta(rds_file: Path, target: Path) -> None:
    """RcppML ``pbmc3k_meta.rds`` (R list: ``cell_type`` factor, ``colnames``) -> annotations CSV.

    Writes columns ``barcode`` (10x barcode with its ``-1`` suffix) and ``seurat_annotation``
    (empty for the 62 unlabelled cells). Needs the ``rdata`` package to parse the R file.
    """
    try:
        import rdata
    except ImportError as err:
        raise DataNotFoundError(
            "Converting RcppML's pbmc3k_meta.rds needs the 'rdata' package (pip install rdata). "
            "Alternatively place pbmc3k_seurat_annotations.csv (columns barcode, seurat_annotation) "
            "in the pbmc3k/ folder; data/README.md says where to get it."
        ) from err
    import pandas as pd

    meta = rdata.read_rds(rds_file)
    labels = pd.Series(pd.Categorical(meta["cell_type"]).astype(object))
    table = pd.DataFrame({"barcode": [f"{b}-1" for b in meta["colnames"]], "seurat_annotation": labels})
    table.to_csv(target, index=False)


def convert_perturbench_devel(devel_file: Path, target: Path) -> None:
    """PerturBench ``devel.h5ad`` -> the Norman 2019 subset with a reconstructed ``counts`` layer.

    Upstream X is ``log1p(count * 1e4 / total_i)``, so ``expm1(X) * s_i`` is whole for one
    scale ``s_i`` per cell: the smallest ``k / min(expm1(X_i))`` (k = 1, 2, ...) that makes the
    row whole (``PROVENANCE.md`` section 6a).
    """
    import anndata as ad
    import scipy.sparse as sp

    source = ad.read_h5ad(devel_file)
    norman = source[source.obs["dataset"] == "norman19"].copy()
    log_values = sp.csr_matrix(norman.X, dtype=np.float64)
    scaled = log_values.copy()
    scaled.data = np.expm1(scaled.data)
    scale = np.array(
        [_integer_scale(scaled.data[scaled.indptr[i] : scaled.indptr[i + 1]]) for i in range(norman.n_obs)]
    )
    counts = sp.csr_matrix(sp.diags(scale) @ scaled)
    counts.data = np.round(counts.data)
    obs = norman.obs.copy()
    condition = obs["condition"].astype(str)
    obs["is_control"] = condition.eq("control")
    obs["n_targets"] = np.where(obs["is_control"], 0, condition.str.count(r"\+") + 1)
    targets = condition.where(~obs["is_control"], "").str.split("+", expand=True).reindex(columns=[0, 1]).fillna("")
    obs["target_1"] = targets[0].astype("category")
    obs["target_2"] = targets[1].astype("category")
    obs["count_scale"] = scale
    obs["panel_counts"] = np.asarray(counts.sum(axis=1)).ravel()
    ad.AnnData(X=log_values, obs=obs, var=norman.var, layers={"counts": counts.astype(np.float32)}).write_h5ad(
        target, compression="gzip"
    )


def _integer_scale(row: np.ndarray, max_multiple: int = 50) -> float:
    """Smallest ``k / min(row)`` that turns ``row`` (expm1 of one cell's log values) into whole numbers."""
    base = row.min()
    for k in range(1, max_multiple + 1):
        candidate = row * k / base
        if np.abs(candidate - np.round(candidate)).max() < 1e-6:
            return k / base
    raise ValueError(f"No scale up to {max_multiple}/min makes this row integer; the values are not log1p of counts.")
