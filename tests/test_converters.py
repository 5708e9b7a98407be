"""The Python converters of the R objects rebuild the placed ``.h5ad`` files exactly.

Each converter reads the upstream copy in ``$GENAILAB_DATA/<folder>/source/`` and must give the
placed file's X (values, dtype, sparsity), obs/var names, obs columns (values and dtypes) and
obsm/uns where present; h5ad bytes differ (gzip/HDF5), so contents are compared, not bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genailab_core.data import converters_r
from genailab_core.data.converters_r import RLayoutError
from genailab_core.data.registry import REGISTRY

CASES = {
    "kang2018_ifnb1k": ("kang2018_ifnb1k_seuratTools.h5ad", "source/seuratTools_ifnb1k.rda"),
    "kang2018_muscat": ("kang2018_muscat_example_sce.h5ad", "source/muscat_example_sce.rda"),
    "papalexi2021": ("papalexi2021_thp1_lowmoi_sceptredata.h5ad", "source/sceptredata_lowmoi_example_data.rda"),
    "paul15": ("paul15_tradeSeq_se.h5ad", "source/tradeSeq_se.rda"),
    "bodymap2": ("bodymap2_asmann_recount.h5ad", "source/ABCdata_AsmannTissues.rda"),
    "wang2008": ("wang2008_recount.h5ad", "source/ABCdata_WangTissues.rda"),
}


def _shared(name: str, relpath: str) -> Path:
    """The shared copy of a data set's file; skip when GENAILAB_DATA is unset or the file is absent."""
    root = os.environ.get("GENAILAB_DATA")
    if not root:
        pytest.skip("GENAILAB_DATA is unset: no upstream R files to convert")
    path = Path(root) / REGISTRY[name].folder / relpath
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def assert_same_anndata(made, placed) -> None:
    """Equal X (values, dtype, sparse format and stored entries), names, obs (values and dtypes), obsm, uns."""
    assert type(made.X) is type(placed.X) and made.X.dtype == placed.X.dtype
    if sp.issparse(placed.X):
        assert made.X.nnz == placed.X.nnz
        assert (made.X != placed.X).nnz == 0
    else:
        np.testing.assert_array_equal(made.X, placed.X)
    pd.testing.assert_index_equal(made.obs_names, placed.obs_names)
    pd.testing.assert_index_equal(made.var_names, placed.var_names)
    pd.testing.assert_frame_equal(made.obs, placed.obs, check_exact=True)
    assert sorted(made.obsm) == sorted(placed.obsm)
    for key in placed.obsm:
        assert made.obsm[key].dtype == placed.obsm[key].dtype and (made.obsm[key] != placed.obsm[key]).nnz == 0
    _assert_same_uns(made.uns, placed.uns)


def _assert_same_uns(made: dict, placed: dict) -> None:
    """Equal uns, e.g. Papalexi's ``grna_ids`` and ``grna_targets`` (a dict of arrays)."""
    assert sorted(made) == sorted(placed)
    for key, value in placed.items():
        if isinstance(value, dict):
            _assert_same_uns(made[key], value)
        else:
            np.testing.assert_array_equal(made[key], value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_rebuilds_placed_file(name, tmp_path):
    import anndata as ad

    placed_rel, source_rel = CASES[name]
    source = _shared(name, source_rel)
    placed = _shared(name, placed_rel)
    entry = REGISTRY[name].file(placed_rel)
    assert entry.converter is not None and entry.downloadable
    target = tmp_path / placed_rel
    entry.converter(source, target)
    assert_same_anndata(ad.read_h5ad(target), ad.read_h5ad(placed))


def test_dropping_a_column_is_detected(tmp_path):
    """The comparison can fail: the muscat file without one obs column is not the placed file."""
    import anndata as ad

    placed = ad.read_h5ad(_shared("kang2018_muscat", CASES["kang2018_muscat"][0]))
    changed = placed.copy()
    del changed.obs["group_id"]
    with pytest.raises(AssertionError):
        assert_same_anndata(changed, placed)


def test_wrong_r_object_names_expected_slot(tmp_path):
    """The muscat SingleCellExperiment given to the Seurat converter says what it expected and found."""
    source = _shared("kang2018_muscat", CASES["kang2018_muscat"][1])
    with pytest.raises(RLayoutError, match=r"ifnb1k.*example_sce.*download it again"):
        converters_r.convert_seurat_ifnb1k(source, tmp_path / "x.h5ad")


def test_wrong_class_names_class_found(tmp_path):
    """A Seurat object where a SingleCellExperiment is expected: the error names both classes."""
    source = _shared("kang2018_ifnb1k", CASES["kang2018_ifnb1k"][1])
    view = converters_r.load_rda(source, "ifnb1k")
    with pytest.raises(RLayoutError, match="SingleCellExperiment.*found S4 of class Seurat"):
        view.expect("SingleCellExperiment")
    with pytest.raises(RLayoutError, match=r"no slot/attribute 'colData'.*'assays'"):
        view.attr("colData")


def test_non_r_file_is_rejected(tmp_path):
    not_r = tmp_path / "se.rda"
    not_r.write_text("gene,count\nA,1\n")
    with pytest.raises(RLayoutError, match="not an R data file"):
        converters_r.convert_tradeseq_se(not_r, tmp_path / "x.h5ad")
    assert not (tmp_path / "x.h5ad").exists()


def test_download_runs_the_r_converter(tmp_path, monkeypatch):
    """resolve_file with downloads on fetches the .rda (pooch, mocked here) and converts it into the cache."""
    import anndata as ad

    from genailab_core.data.registry import resolve_file

    source = _shared("paul15", CASES["paul15"][1])
    placed = _shared("paul15", CASES["paul15"][0])
    monkeypatch.delenv("GENAILAB_DATA")
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAILAB_OFFLINE", "0")
    monkeypatch.setattr("pooch.retrieve", lambda url, **kwargs: str(source))
    made = resolve_file("paul15", CASES["paul15"][0])
    assert made == tmp_path / "cache" / "paul15_myeloid" / CASES["paul15"][0]
    assert_same_anndata(ad.read_h5ad(made), ad.read_h5ad(placed))
