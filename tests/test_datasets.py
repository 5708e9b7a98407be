"""Loaders reproduce the numbers of PROVENANCE.md and share one harmonized layout."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genailab_core.data import (
    UnknownDatasetError,
    load_dataset,
    load_kang,
    load_norman_full,
    load_pbmc3k,
)
from genailab_core.data.datasets import NORMAN_OBS_COLUMNS

PBMC_TYPES = {
    "Naive CD4 T": 697,
    "Memory CD4 T": 483,
    "CD14+ Mono": 480,
    "B": 344,
    "CD8 T": 271,
    "FCGR3A+ Mono": 162,
    "NK": 155,
    "DC": 32,
    "Platelet": 14,
}


def assert_count_layout(adata: ad.AnnData, name: str) -> None:
    """The contract every loader keeps: CSR float32 whole numbers, unique genes, library size."""
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    data = adata.X.data
    assert data.min() >= 0 and np.array_equal(data, np.round(data))
    assert adata.var_names.is_unique
    assert adata.uns["dataset"] == name
    assert adata.obs["library_size"].dtype == np.float64


def test_pbmc3k_labelled(pbmc3k):
    assert pbmc3k.shape == (2638, 32738)
    assert_count_layout(pbmc3k, "pbmc3k")
    assert pbmc3k.obs["cell_type"].value_counts().to_dict() == PBMC_TYPES
    assert list(pbmc3k.obs["cell_type"].cat.categories) == list(PBMC_TYPES)
    np.testing.assert_array_equal(pbmc3k.obs["library_size"], np.asarray(pbmc3k.X.sum(axis=1)).ravel())


def test_pbmc3k_all_cells(pbmc3k_all):
    assert pbmc3k_all.shape == (2700, 32738)
    assert int(pbmc3k_all.obs["cell_type"].isna().sum()) == 62
    assert pbmc3k_all.X.sum(dtype=np.float64) == 6_390_631
    assert pbmc3k_all.X.max() == 419 and pbmc3k_all.X.nnz == 2_286_884


def test_pbmc3k_matches_10x_files(pbmc3k_all, data_root):
    """Independent reference: the 10x MatrixMarket files read by scanpy."""
    import scanpy as sc

    reference = sc.read_10x_mtx(data_root / "pbmc3k" / "filtered_gene_bc_matrices" / "hg19", var_names="gene_symbols")
    assert list(reference.var_names) == list(pbmc3k_all.var_names)
    assert list(reference.obs_names) == list(pbmc3k_all.obs_names)
    assert (reference.X != pbmc3k_all.X).nnz == 0


def test_pbmc3k_explicit_folder(data_root, pbmc3k):
    adata = load_pbmc3k(path=data_root / "pbmc3k")
    assert adata.shape == pbmc3k.shape and (adata.obs["cell_type"] == pbmc3k.obs["cell_type"]).all()


def test_kang_ifnb1k(kang_ifnb1k, data_root):
    assert kang_ifnb1k.shape == (832, 14053)
    assert_count_layout(kang_ifnb1k, "kang2018_ifnb1k")
    assert kang_ifnb1k.obs["condition"].value_counts().to_dict() == {"stimulated": 441, "control": 391}
    assert (kang_ifnb1k.obs["condition"] == "control").sum() == (kang_ifnb1k.obs["stim"] == "CTRL").sum()
    assert kang_ifnb1k.obs["cell_type"].value_counts().to_dict() == {
        "CD14 Mono": 304,
        "CD4 Naive T": 197,
        "CD4 Memory T": 109,
        "CD16 Mono": 88,
        "B": 81,
        "CD8 T": 53,
    }
    assert list(kang_ifnb1k.obs["batch"].cat.categories) == ["unknown"]
    # Seurat's own per-cell totals are an independent record of the library size
    np.testing.assert_array_equal(kang_ifnb1k.obs["library_size"], kang_ifnb1k.obs["nCount_RNA"])


def test_kang_muscat(kang_muscat):
    assert kang_muscat.shape == (1556, 1267)
    assert_count_layout(kang_muscat, "kang2018_muscat")
    assert kang_muscat.obs["condition"].value_counts().to_dict() == {"stimulated": 806, "control": 750}
    table = pd.crosstab(kang_muscat.obs["sample_id"], kang_muscat.obs["batch"])
    assert table.loc["ctrl101", "101"] == 454 and table.loc["stim107", "107"] == 306
    assert table.loc["ctrl101", "107"] == 0 and table.loc["stim107", "101"] == 0
    assert kang_muscat.obs["cell_type"].nunique() == 5


def test_kang_bad_subset():
    with pytest.raises(ValueError, match="ifnb1k"):
        load_kang(subset="full")


def test_norman_subset(norman, data_root):
    assert norman.shape == (3375, 500)
    assert_count_layout(norman, "norman2019_subset")
    assert tuple(norman.obs.columns) == NORMAN_OBS_COLUMNS
    obs = norman.obs
    assert obs["perturbation"].nunique() == 34 and obs["perturbation"].cat.categories[0] == "control"
    assert obs["library_size"].median() == 13_523
    assert obs["panel_counts"].median() == 126
    assert (obs["perturbation"] == obs["condition"]).all()
    assert obs.groupby("n_targets", observed=True)["perturbation"].nunique().to_dict() == {0: 1, 1: 18, 2: 15}
    assert (obs["is_control"] == (obs["perturbation"] == "control")).all() and obs["is_control"].sum() == 100
    rebuilt = np.where(
        obs["n_targets"] == 2,
        obs["target_1"].astype(str) + "+" + obs["target_2"].astype(str),
        obs["target_1"].astype(str),
    )
    assert (rebuilt[~obs["is_control"]] == obs["perturbation"].astype(str)[~obs["is_control"]]).all()
    # Independent check of the counts: upstream X = log1p(counts / count_scale)
    source = ad.read_h5ad(data_root / "norman2019" / "norman2019_perturbench_subset.h5ad")
    assert (source.obs_names == norman.obs_names).all()
    log_values = sp.diags(1.0 / source.obs["count_scale"].to_numpy()) @ norman.X.astype(np.float64)
    log_values.data = np.log1p(log_values.data)
    assert abs(log_values - source.X).max() < 1e-12


def _fake_scperturb(norman: ad.AnnData, rng: np.random.Generator) -> ad.AnnData:
    """A tiny AnnData in scPerturb's NormanWeissman2019_filtered.h5ad layout."""
    labels = ["control", "KLF1", "KLF1_MAP2K6", "KIAA1804", "SET_KLF1", "control"]
    counts = rng.poisson(2.0, size=(len(labels), 7)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels),
            "nCount_RNA": np.array([12000, 9000, 15000, 8000, 20000, 10000], dtype=np.float32),
            "nFeature_RNA": np.arange(len(labels)),
            "perturbation_type": "CRISPR",
        },
        index=[f"AAAC{i}-1" for i in range(len(labels))],
    )
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=list(norman.var_names[:7])))


def test_norman_full_scperturb_layout_matches_subset(norman, tmp_path):
    fake = _fake_scperturb(norman, np.random.default_rng(0))
    fake.write_h5ad(tmp_path / "NormanWeissman2019_filtered.h5ad")
    full = load_norman_full(tmp_path / "NormanWeissman2019_filtered.h5ad")
    assert list(full.obs.columns) == list(norman.obs.columns)
    assert full.obs.dtypes.map(lambda d: d.name).to_dict() == norman.obs.dtypes.map(lambda d: d.name).to_dict()
    assert list(full.obs["perturbation"]) == ["control", "KLF1", "KLF1+MAP2K6", "MAP3K21", "SET+KLF1", "control"]
    assert list(full.obs["perturbation"].cat.categories) == ["control", "KLF1", "MAP3K21", "KLF1+MAP2K6", "SET+KLF1"]
    assert set(full.obs["perturbation"].cat.categories) - {"control"} <= set(norman.obs["perturbation"].cat.categories)
    assert list(full.obs["target_2"]) == ["", "", "MAP2K6", "", "KLF1", ""]
    assert list(full.obs["n_targets"]) == [0, 1, 2, 1, 2, 0]
    np.testing.assert_array_equal(full.obs["library_size"], fake.obs["nCount_RNA"])
    np.testing.assert_array_equal(full.obs["panel_counts"], fake.X.sum(axis=1).A1)
    assert_count_layout(full, "norman2019")
    np.testing.assert_array_equal(full.X.toarray(), fake.X.toarray())


def test_norman_full_gears_layout(norman, tmp_path):
    fake = _fake_scperturb(norman, np.random.default_rng(1))
    gears_labels = ["ctrl", "KLF1+ctrl", "KLF1+MAP2K6", "ctrl+MAP2K6", "SET+KLF1", "ctrl"]
    fake.obs = pd.DataFrame({"condition": pd.Categorical(gears_labels)}, index=fake.obs_names)
    fake.layers["counts"] = fake.X.copy()
    fake.X = sp.csr_matrix(np.log1p(fake.X.toarray()))
    fake.write_h5ad(tmp_path / "gears.h5ad")
    full = load_norman_full(tmp_path / "gears.h5ad")
    assert list(full.obs["perturbation"]) == ["control", "KLF1", "KLF1+MAP2K6", "MAP2K6", "SET+KLF1", "control"]
    np.testing.assert_array_equal(full.obs["library_size"], fake.layers["counts"].sum(axis=1).A1)
    del fake.layers["counts"]
    fake.write_h5ad(tmp_path / "gears_log.h5ad")
    with pytest.raises(ValueError, match="scPerturb"):
        load_norman_full(tmp_path / "gears_log.h5ad")


def test_norman_gi_tables(norman_gi):
    shapes = {key: table.shape for key, table in norman_gi.items()}
    assert shapes == {
        "expression_model_fits": (125, 57),
        "manifold_umap": (287, 7),
        "gi_type_labels": (88, 5),
        "growth_gi_map": (6441, 7),
    }
    labels = norman_gi["gi_type_labels"]["gi_type"].value_counts()
    assert len(labels) == 8 and labels["ADDITIVE"] == 16 and labels["POTENTIATION"] == 6
    assert norman_gi["manifold_umap"]["condition"].nunique() == 237


def test_papalexi(papalexi):
    assert papalexi.shape == (20729, 299)
    assert_count_layout(papalexi, "papalexi2021")
    counts = papalexi.obs["perturbation"].value_counts()
    assert counts["control"] == 2386 and counts["IFNGR1"] == 1341 and counts["SPI1"] == 48
    assert len(counts) == 26 and "non-targeting" not in counts
    assert papalexi.obs["batch"].value_counts().to_dict() == {"rep_1": 9428, "rep_2": 6001, "rep_3": 5300}
    np.testing.assert_allclose(papalexi.obs["library_size"], papalexi.X.sum(axis=1).A1)
    assert papalexi.obsm["grna_counts"].shape == (20729, 110)


def test_paul15(paul15):
    assert paul15.shape == (2660, 3004)
    assert_count_layout(paul15, "paul15")
    assert paul15.obs["cell_type"].value_counts().to_dict() == {
        "Erythrocyte": 1095,
        "Monocytes": 559,
        "Basophils": 369,
        "GMP": 216,
        "Neutrophils": 186,
        "Multipotent progenitors": 167,
        "Megakaryocytes": 68,
    }
    assert paul15.obs["cell_type_coarse"].value_counts().to_dict() == {"GMP": 1114, "erythroid": 1095, "CMP": 451}
    assert paul15.obs["batch"].nunique() == 16
    assert 0 <= paul15.obs["pseudotime"].min() and paul15.obs["pseudotime"].max() < 21
    assert paul15.X.max() == 168


def test_bulk(bodymap2, wang2008):
    assert bodymap2.shape == (19, 52580) and wang2008.shape == (22, 52580)
    assert_count_layout(bodymap2, "bodymap2")
    assert_count_layout(wang2008, "wang2008")
    assert bodymap2.obs["tissue"].nunique() == 17 and (bodymap2.obs["tissue"] == "mixture").sum() == 3
    assert (bodymap2.obs["tissue"] == bodymap2.obs["cell_type"]).all()
    # exact int32 totals of the source (19.0M to 57.7M reads): float32 accumulation would round them
    assert bodymap2.obs["library_size"].min() == 18_987_359 and bodymap2.obs["library_size"].max() == 57_697_453
    assert (wang2008.obs["tissue"] == "cerebellum").sum() == 6
    assert bodymap2.var_names[0].startswith("ENSG")


def test_load_dataset_dispatch(kang_muscat):
    adata = load_dataset("kang2018_muscat")
    assert adata.shape == kang_muscat.shape and adata.uns["dataset"] == "kang2018_muscat"


def test_load_dataset_unknown_lists_names():
    with pytest.raises(UnknownDatasetError, match="pbmc3k.*wang2008"):
        load_dataset("kang2018")
