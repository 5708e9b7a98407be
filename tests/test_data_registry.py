"""Registry: file resolution order, offline errors, hash checks, download-time conversions."""

from __future__ import annotations

import shutil
import tarfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io as sio
import scipy.sparse as sp

from genailab_core.data import catalog, converters, registry
from genailab_core.data.registry import (
    REGISTRY,
    ChecksumError,
    DataNotFoundError,
    UnknownDatasetError,
    check_hash,
    resolve_file,
    verify_dataset,
)

EXPECTED_FOLDERS = {
    "pbmc3k": "pbmc3k",
    "kang2018_ifnb1k": "kang2018",
    "kang2018_muscat": "kang2018",
    "norman2019_subset": "norman2019",
    "norman2019_gi": "norman2019",
    "norman2019": "norman2019",
    "papalexi2021": "papalexi2021_eccite",
    "paul15": "paul15_myeloid",
    "klein2015": "klein2015",
    "bodymap2": "bulk_tissues",
    "wang2008": "bulk_tissues",
}


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No local copy anywhere: empty GENAILAB_DATA and cache."""
    monkeypatch.setenv("GENAILAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GENAILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAILAB_OFFLINE", "1")
    return tmp_path


def test_registry_names_and_folders():
    assert {name: spec.folder for name, spec in REGISTRY.items()} == EXPECTED_FOLDERS


def test_every_file_has_url_and_wellformed_hashes():
    for spec in REGISTRY.values():
        assert spec.citation and spec.licence and spec.url.startswith("http")
        for entry in spec.files:
            assert entry.url.startswith("http"), entry
            if entry.sha256 is not None:
                assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
            if entry.relpath.startswith("source/"):
                # byte-identical upstream copies: raw GitHub URL at a fixed commit, hash = placed file's
                assert entry.url.startswith("https://raw.githubusercontent.com/")
                assert entry.url_hash == f"sha256:{entry.sha256}"
                assert not entry.required and not entry.converted


def provenance_checksums(data_root) -> dict[str, str]:
    """path -> sha256 of every row of PROVENANCE.md's checksum table."""
    table = {}
    for line in (data_root / "PROVENANCE.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.split("|")]
        if len(cells) == 6 and len(cells[4]) == 64:
            table[cells[1]] = cells[4]
    return table


def test_registry_hashes_match_provenance_table(data_root):
    """The sha256 column of PROVENANCE.md's checksum table is what the registry records, row for row."""
    table = provenance_checksums(data_root)
    recorded = {
        f"{spec.folder}/{entry.relpath}": entry.sha256
        for spec in REGISTRY.values()
        for entry in spec.files
        if entry.sha256
    }
    assert len(table) >= 37                                     # the table grows; it never loses a row
    assert recorded == table


def test_verify_all_local_datasets(data_root):
    """Every file of the checksum table is verified (the full Norman screen is not placed in shared/)."""
    checked = [p for name in REGISTRY if name != "norman2019" for p in verify_dataset(name)]
    placed = {path for path in provenance_checksums(data_root) if (data_root / path).exists()}
    assert {str(p.relative_to(data_root)) for p in set(checked)} == placed


def test_verify_detects_modified_file(data_root, tmp_path):
    folder = tmp_path / "norman2019"
    folder.mkdir()
    for entry in REGISTRY["norman2019_gi"].files:
        if entry.required:
            shutil.copy(data_root / "norman2019" / entry.relpath, folder / entry.relpath)
    assert len(verify_dataset("norman2019_gi", path=folder)) == 4
    target = folder / "norman2019_gi_type_labels_gears.csv"
    target.write_text(target.read_text().replace("ADDITIVE", "SYNERGY", 1))
    with pytest.raises(ChecksumError, match="norman2019_gi_type_labels_gears.csv"):
        verify_dataset("norman2019_gi", path=folder)


def test_verify_reports_missing_required_file(empty_env):
    with pytest.raises(DataNotFoundError, match="pbmc3k_raw.h5ad"):
        verify_dataset("pbmc3k")


def test_check_hash_known_digests(tmp_path):
    """Reference digests of b'abc' (FIPS 180-2 and RFC 1321 test vectors)."""
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    check_hash(path, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    check_hash(path, "md5:900150983cd24fb0d6963f7d28e17f72")
    with pytest.raises(ChecksumError, match="sha256"):
        check_hash(path, "sha256:" + "0" * 64)


def test_offline_error_names_url_folder_and_variable(empty_env):
    with pytest.raises(DataNotFoundError) as info:
        resolve_file("pbmc3k", "pbmc3k_raw.h5ad")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert registry.REGISTRY["pbmc3k"].file("pbmc3k_raw.h5ad").url in message
    assert str(empty_env / "data" / "pbmc3k" / "pbmc3k_raw.h5ad") in message
    assert "'pbmc3k/'" in message and "GENAILAB_DATA" in message and "GENAILAB_OFFLINE=1" in message


def test_error_without_data_variable_still_says_where(empty_env, monkeypatch):
    monkeypatch.delenv("GENAILAB_DATA")
    with pytest.raises(DataNotFoundError, match=r"GENAILAB_DATA.*kang2018"):
        resolve_file("kang2018_muscat", "kang2018_muscat_example_sce.h5ad")


def test_manual_conversion_file_is_not_downloaded(empty_env, monkeypatch):
    """Files made by a conversion with no converter are never fetched: the error names the upstream file instead."""
    monkeypatch.setenv("GENAILAB_OFFLINE", "0")
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DataNotFoundError) as info:
        resolve_file("norman2019_gi", "norman2019_gi_expression_model_fits.csv")
    assert "raw.githubusercontent.com/thomasmaxwellnorman/Perturbseq_GI" in str(info.value)
    assert "norman2019/" in str(info.value)


def test_unknown_dataset_lists_names():
    with pytest.raises(UnknownDatasetError) as info:
        resolve_file("pbmc68k", "x.h5ad")
    assert isinstance(info.value, KeyError)
    for name in REGISTRY:
        assert name in str(info.value)


def test_unknown_file_lists_files():
    with pytest.raises(KeyError, match="pbmc3k_raw.h5ad"):
        resolve_file("pbmc3k", "nope.h5ad")


def test_resolution_order(empty_env, monkeypatch):
    relpath = "norman2019_gi_type_labels_gears.csv"
    cached = empty_env / "cache" / "norman2019" / relpath
    cached.parent.mkdir(parents=True)
    cached.write_text("cache")
    assert resolve_file("norman2019_gi", relpath) == cached
    placed = empty_env / "data" / "norman2019" / relpath
    placed.parent.mkdir(parents=True)
    placed.write_text("data")
    assert resolve_file("norman2019_gi", relpath) == placed  # GENAILAB_DATA before the cache
    explicit = empty_env / "elsewhere.csv"
    explicit.write_text("explicit")
    assert resolve_file("norman2019_gi", relpath, path=explicit) == explicit
    assert resolve_file("norman2019_gi", relpath, path=empty_env / "data" / "norman2019") == placed
    with pytest.raises(DataNotFoundError, match="explicit path"):
        resolve_file("norman2019_gi", relpath, path=empty_env / "missing.csv")
    with pytest.raises(ChecksumError):
        resolve_file("norman2019_gi", relpath, verify=True)


def test_download_converts_perturbench_devel(data_root, empty_env, monkeypatch):
    """The download path of the Norman subset (pooch stubbed with the local upstream copy)
    rebuilds the placed file: same reconstructed counts and added obs columns."""
    source = data_root / "norman2019" / "source" / "perturbench_devel.h5ad"
    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash))
        path.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(source, path / fname))

    monkeypatch.setenv("GENAILAB_OFFLINE", "0")
    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    built = resolve_file("norman2019_subset", "norman2019_perturbench_subset.h5ad")
    assert built == empty_env / "cache" / "norman2019" / "norman2019_perturbench_subset.h5ad"
    upstream = registry.github_raw(
        "altoslabs/perturbench", "4dd6a03c54ef348f6be6e46e21ea7f80eb2daaa2", "src/perturbench/data/resources/devel.h5ad"
    )
    assert calls == [(upstream, "sha256:220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b")]
    rebuilt = ad.read_h5ad(built)
    placed = ad.read_h5ad(data_root / "norman2019" / "norman2019_perturbench_subset.h5ad")
    assert (rebuilt.obs_names == placed.obs_names).all()
    assert (rebuilt.layers["counts"] != placed.layers["counts"]).nnz == 0
    for column in ["is_control", "n_targets", "target_1", "target_2", "panel_counts"]:
        assert (rebuilt.obs[column].astype(str) == placed.obs[column].astype(str)).all(), column
    np.testing.assert_allclose(rebuilt.obs["count_scale"], placed.obs["count_scale"], rtol=1e-12)


def _write_fake_10x_tarball(path):
    """A 3-gene x 2-cell 10x archive with a duplicated symbol (as in PBMC 3k's 'U1' genes)."""
    counts = np.array([[1, 0], [0, 5], [2, 3]])  # genes x cells
    folder = path / "filtered_gene_bc_matrices" / "hg19"
    folder.mkdir(parents=True)
    sio.mmwrite(folder / "matrix.mtx", sp.coo_matrix(counts), field="integer")
    (folder / "genes.tsv").write_text("ENSG1\tU1\nENSG2\tCD3E\nENSG3\tU1\n")
    (folder / "barcodes.tsv").write_text("AAAC-1\nTTTG-1\n")
    archive = path / "pbmc3k_filtered_gene_bc_matrices.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(path / "filtered_gene_bc_matrices", arcname="filtered_gene_bc_matrices")
    return archive, counts


def test_convert_10x_tarball(tmp_path):
    archive, counts = _write_fake_10x_tarball(tmp_path)
    target = tmp_path / "pbmc3k_raw.h5ad"
    converters.convert_10x_tarball(archive, target)
    adata = ad.read_h5ad(target)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)
    assert list(adata.var_names) == ["U1", "CD3E", "U1-1"]
    assert list(adata.var["gene_ids"]) == ["ENSG1", "ENSG2", "ENSG3"]
    assert list(adata.obs_names) == ["AAAC-1", "TTTG-1"]
    converters._extract_tar_member("filtered_gene_bc_matrices/hg19/genes.tsv")(archive, tmp_path / "genes.tsv")
    assert (tmp_path / "genes.tsv").read_text().startswith("ENSG1\tU1")


def test_convert_rcppml_meta(data_root, tmp_path):
    """With `rdata` the RcppML .rds gives the placed CSV; without it, the error says what to place."""
    target = tmp_path / "pbmc3k_seurat_annotations.csv"
    rds = data_root / "pbmc3k" / "source" / "RcppML_pbmc3k_meta.rds"
    try:
        import rdata  # noqa: F401
    except ImportError:
        with pytest.raises(DataNotFoundError, match=r"pip install rdata.*pbmc3k_seurat_annotations\.csv"):
            converters.convert_rcppml_meta(rds, target)
        return
    converters.convert_rcppml_meta(rds, target)
    expected = pd.read_csv(data_root / "pbmc3k" / "pbmc3k_seurat_annotations.csv")
    pd.testing.assert_frame_equal(pd.read_csv(target), expected)


def test_md5_registry_entry_for_full_norman():
    entry = REGISTRY["norman2019"].file("NormanWeissman2019_filtered.h5ad")
    assert entry.url.startswith("https://zenodo.org/records/") and entry.local_hash.startswith("md5:")
    assert entry.downloadable and not entry.converted and entry.sha256 is None


_TOML_ENTRY = """
[[dataset]]
name = "tiny"
folder = "tiny"
title = "A tiny data set"
citation = "Nobody (2024)."
licence = "CC0"
url = "https://example.org/tiny"

[[dataset.file]]
relpath = "tiny.h5ad"
sha256 = "{sha}"
repo = "owner/tiny"
commit = "0123456789abcdef0123456789abcdef01234567"
path = "data/tiny.tar.gz"
url_hash = ""
description = "The tiny matrix."
converted = true
converter = "{converter}"
member = "tiny/matrix.mtx"
"""


def test_parse_catalog_builds_specs():
    """A TOML entry gives a DatasetSpec with the GitHub raw URL and the converter named in it."""
    specs = catalog.parse_catalog(_TOML_ENTRY.format(sha="ab" * 32, converter="extract_tar_member"))
    entry = specs["tiny"].file("tiny.h5ad")
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert entry.url == registry.github_raw("owner/tiny", commit, "data/tiny.tar.gz")
    assert entry.sha256 == "ab" * 32 and entry.url_hash is None
    assert entry.converted and entry.required and callable(entry.converter)


def test_parse_catalog_rejects_unknown_converter():
    message = r"data set 'tiny', file 'tiny.h5ad': unknown converter 'convert_tiny'"
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse_catalog(_TOML_ENTRY.format(sha="ab" * 32, converter="convert_tiny"))


def test_parse_catalog_rejects_missing_sha256():
    text = _TOML_ENTRY.format(sha="ab" * 32, converter="extract_tar_member")
    text = text.replace('sha256 = "' + "ab" * 32 + '"\n', "")
    with pytest.raises(catalog.CatalogError, match=r"data set 'tiny', file 'tiny.h5ad': missing field 'sha256'"):
        catalog.parse_catalog(text)


def test_catalog_file_loads_into_registry():
    """REGISTRY is what the shipped datasets.toml says, entry for entry."""
    assert catalog.load_catalog() == REGISTRY


def test_catalog_file_ships_with_the_package():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genailab_core"]
    assert any(Path(catalog.CATALOG_FILE).match(p) for p in patterns)
