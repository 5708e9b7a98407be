"""Count checks, gene checks and the scanpy wrappers, against hand-computed values."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genailab_core.data import (
    add_library_size,
    check_counts,
    check_genes,
    log_normalize,
    qc_filter,
    row_sums,
    select_hvg,
    simulate_counts,
)


@pytest.mark.parametrize(
    "counts",
    [
        np.array([[0, 3], [1, 7]]),
        np.array([[0.0, 3.0], [1.0, 7.0]], dtype=np.float32),
        sp.csr_matrix(np.array([[0.0, 3.0], [1.0, 7.0]], dtype=np.float32)),
        torch.tensor([[0.0, 3.0], [1.0, 7.0]]),
        torch.tensor([[0.0, 3.0], [1.0, 7.0]]).to_sparse(),
    ],
)
def test_check_counts_accepts_integer_counts(counts):
    check_counts(counts)


@pytest.mark.parametrize("make", [np.asarray, sp.csr_matrix, torch.tensor])
def test_check_counts_rejects_nan(make):
    with pytest.raises(ValueError, match=r"1 NaN and 1 infinite.*layers\['counts'\]"):
        check_counts(make(np.array([[1.0, np.nan], [np.inf, 2.0]])), what="adata.X")


@pytest.mark.parametrize("make", [np.asarray, sp.csr_matrix, torch.tensor])
def test_check_counts_rejects_negative(make):
    with pytest.raises(ValueError, match="negative.*scaled or centered"):
        check_counts(make(np.array([[1.0, -0.5], [0.0, 2.0]])))
    with pytest.raises(ValueError, match="negative"):
        check_counts(np.array([[1, -2]]))


@pytest.mark.parametrize("make", [np.asarray, sp.csr_matrix, torch.tensor])
def test_check_counts_rejects_log_normalized(make):
    logged = np.log1p(np.array([[1.0, 0.0], [3.0, 2.0]]))
    with pytest.raises(ValueError, match=r"non-integer.*log-normalized.*adata\.layers\['counts'\]"):
        check_counts(make(logged))


def test_check_counts_names_scaled_data():
    with pytest.raises(ValueError, match="CPM or size-factor"):
        check_counts(np.array([[1234.5, 0.0]]))


def test_check_genes():
    expected = ["A", "B", "C", "D"]
    check_genes(pd.Index(expected), expected)
    with pytest.raises(ValueError, match=r"1 missing .*'D'.*2 extra.*adata\[:, expected\]"):
        check_genes(["A", "B", "C", "X", "Y"], expected)
    with pytest.raises(ValueError, match=r"2 are in a different order.*adata\[:, expected\]"):
        check_genes(["A", "C", "B", "D"], expected)


def _toy() -> ad.AnnData:
    x = np.array(
        [
            [5, 0, 1, 0, 4],  # 3 genes detected
            [0, 0, 2, 0, 0],  # 1 gene detected
            [3, 1, 0, 0, 6],  # 3 genes detected
        ],
        dtype=np.float32,
    )
    return ad.AnnData(X=sp.csr_matrix(x), var=pd.DataFrame(index=["MT-CO1", "G1", "G2", "G3", "G4"]))


def test_row_sums_exact_above_float32_precision():
    big = sp.csr_matrix(np.array([[16_777_216.0, 1.0, 2.0]], dtype=np.float32))
    assert row_sums(big)[0] == 16_777_219  # float32 accumulation would give 16,777,220
    assert row_sums(big.toarray())[0] == 16_777_219


def test_add_library_size():
    adata = _toy()
    add_library_size(adata)
    np.testing.assert_array_equal(adata.obs["library_size"], [10.0, 2.0, 10.0])


def test_log_normalize_matches_formula():
    adata = _toy()
    log_normalize(adata, target_sum=100.0)
    x = adata.X.toarray()
    expected = np.log1p(100.0 * x / x.sum(axis=1, keepdims=True))
    layer = adata.layers["log1p"]
    np.testing.assert_allclose(layer.toarray() if sp.issparse(layer) else layer, expected, rtol=1e-6)
    check_counts(adata.X)  # X untouched


def test_qc_filter():
    out = qc_filter(_toy(), min_genes=2, min_cells=1)
    assert list(out.obs_names) == ["0", "2"]
    assert list(out.var_names) == ["MT-CO1", "G1", "G2", "G4"]  # G3 never detected
    mito = qc_filter(_toy(), min_genes=2, min_cells=1, max_pct_mito=40.0)
    # cell 0: 5/10 = 50 % mitochondrial (dropped); cell 2: 3/10 = 30 % (kept)
    assert list(mito.obs_names) == ["2"]
    np.testing.assert_allclose(mito.obs["pct_counts_mito"], [30.0])
    with pytest.raises(ValueError, match="mito_prefix"):
        qc_filter(_toy(), min_genes=1, min_cells=1, max_pct_mito=10.0, mito_prefix=("chrM-",))


@pytest.fixture(scope="module")
def simulated():
    """Near-Poisson genes (theta = 100), so extra variance comes only from the planted type effects."""
    return simulate_counts(
        n_cells=600, n_genes=300, n_cell_types=4, n_batches=1, n_programs=0, dispersion=100.0, seed=3
    )


def _marker_genes(adata: ad.AnnData) -> set[str]:
    effects = adata.uns["ground_truth"]["type_effects"]
    return set(adata.var_names[(np.abs(effects) > 0.5).any(axis=0)])  # about 25 % of the genes


def test_select_hvg_pearson_residuals_finds_planted_markers(simulated):
    hvg = select_hvg(simulated, n_top_genes=30, flavor="pearson_residuals")
    assert hvg.n_vars == 30 and hvg.n_obs == simulated.n_obs
    overlap = len(set(hvg.var_names) & _marker_genes(simulated)) / 30
    assert overlap > 0.9  # chance level: about 0.25
    np.testing.assert_array_equal(hvg.X.toarray(), simulated[:, hvg.var_names].X.toarray())  # counts kept


def test_select_hvg_seurat_v3_finds_planted_markers(simulated):
    pytest.importorskip("skmisc", reason="scanpy's seurat_v3 flavor needs scikit-misc")
    hvg = select_hvg(simulated, n_top_genes=30, flavor="seurat_v3")
    assert len(set(hvg.var_names) & _marker_genes(simulated)) / 30 > 0.9


@pytest.mark.parametrize("flavor", ["seurat_v3", "pearson_residuals"])
def test_select_hvg_fit_on_ignores_the_held_out_cells(simulated, flavor):
    """A gene made wildly variable in held-out cells only is chosen transductively, never with fit_on."""
    if flavor == "seurat_v3":
        pytest.importorskip("skmisc", reason="scanpy's seurat_v3 flavor needs scikit-misc")
    data = simulated.copy()
    held_out = np.arange(data.n_obs) % 5 == 0
    X = data.X.toarray()
    planted = int(np.argmin(X.var(0) + (X.mean(0) == 0)))          # a quiet gene
    X[held_out, planted] = np.where(np.arange(held_out.sum()) % 2 == 0, 0.0, 400.0)
    data.X = sp.csr_matrix(X)
    name = data.var_names[planted]
    assert name in select_hvg(data, n_top_genes=30, flavor=flavor).var_names              # transductive
    inductive = select_hvg(data, n_top_genes=30, flavor=flavor, fit_on=~held_out)
    assert name not in inductive.var_names and inductive.n_obs == data.n_obs
    assert list(inductive.var_names) == list(select_hvg(data[~held_out], n_top_genes=30, flavor=flavor).var_names)
    with pytest.raises(ValueError, match="at least 2"):
        select_hvg(data, fit_on=[0])


def test_select_hvg_rejects_log_data(simulated):
    logged = simulated.copy()
    logged.X = logged.X.log1p()
    with pytest.raises(ValueError, match="log-normalized"):
        select_hvg(logged, flavor="pearson_residuals")
    with pytest.raises(ValueError, match="Unknown flavor"):
        select_hvg(simulated, flavor="cell_ranger")


def test_select_hvg_seurat_v3_without_skmisc_says_what_to_install(simulated, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_skmisc(name, *args, **kwargs):
        if name.startswith("skmisc"):
            raise ImportError("No module named 'skmisc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skmisc)
    with pytest.raises(ImportError, match="pip install scikit-misc.*pearson_residuals"):
        select_hvg(simulated, flavor="seurat_v3")


def test_log_normalize_counts_matches_scanpy_for_every_input_type():
    import scanpy as sc
    import torch

    from genailab_core.data import log_normalize_counts

    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(20, 8)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    expected = np.asarray(sc.pp.log1p(sc.pp.normalize_total(adata, target_sum=1e4, inplace=False)["X"],
                                      copy=True).todense())
    np.testing.assert_allclose(log_normalize_counts(counts), expected, rtol=1e-5)
    np.testing.assert_allclose(log_normalize_counts(sp.csr_matrix(counts)).toarray(), expected, rtol=1e-5)
    np.testing.assert_allclose(log_normalize_counts(torch.as_tensor(counts)), expected, rtol=1e-5)
    assert np.all(log_normalize_counts(np.zeros((2, 3))) == 0)                      # empty cells stay 0
    panel = np.full(20, 1e4)                                                          # a library counted over more genes
    np.testing.assert_allclose(log_normalize_counts(counts, library=panel), np.log1p(counts), rtol=1e-6)
    with pytest.raises(ValueError, match="one size per cell"):
        log_normalize_counts(counts, library=panel[:3])


def test_a_singular_seurat_v3_loess_is_refitted_with_a_wider_span(pbmc3k_all):
    """540 PBMCs: skmisc's loess reports a 'reciprocal condition number' at span 0.3 (scanpy #1504); select_hvg
    warns and refits wider instead of failing."""
    pytest.importorskip("skmisc", reason="scanpy's seurat_v3 flavor needs scikit-misc")
    import scanpy as sc

    cells = pbmc3k_all[np.random.default_rng(0).choice(pbmc3k_all.n_obs, 540, replace=False)].copy()
    with pytest.raises(ValueError, match="reciprocal condition number"):
        sc.pp.highly_variable_genes(cells, n_top_genes=2000, flavor="seurat_v3", span=0.3, inplace=False)
    with pytest.warns(UserWarning, match="singular at span=0.30.*refitting with span=0.35"):
        hvg = select_hvg(cells, n_top_genes=2000, flavor="seurat_v3")
    assert hvg.n_vars == 2000
