"""Where every data set comes from, and how a file is found on disk.

Each data set is a :class:`DatasetSpec`: its canonical public page, citation and licence,
and the files its loader reads (:class:`DataFile`, each with the sha256 of the verified copy
and the canonical URL it comes from). :func:`resolve_file` finds a file in this order
(``DESIGN.md`` section 5):

1. an explicit ``path=`` (a file, or a folder that holds the data set's files);
2. ``$GENAILAB_DATA/<folder>/<file>``;
3. the cache ``$GENAILAB_CACHE/<folder>/<file>`` (default ``~/.cache/genailab``);
4. a download from the canonical URL through pooch, with a hash check, converting the
   upstream file where the placed file is a conversion of it. ``GENAILAB_OFFLINE=1``
   forbids this step.

With no copy it raises :class:`DataNotFoundError`, whose message names the URL, the folder
to put the file in, and the ``GENAILAB_DATA`` variable. Checksums of local copies are
checked by :func:`verify_dataset` (hashing 30 MB on every load would be slow).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_ENV = "GENAILAB_DATA"
CACHE_ENV = "GENAILAB_CACHE"
OFFLINE_ENV = "GENAILAB_OFFLINE"
DEFAULT_CACHE = Path("~/.cache/genailab")


class UnknownDatasetError(KeyError):
    """A data set name that is not in :data:`REGISTRY`."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as a sentence.
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(FileNotFoundError):
    """No local copy of a data file, and no download was possible or allowed."""


class ChecksumError(ValueError):
    """A file's sha256 differs from the one recorded in the registry."""


def github_raw(repo: str, commit: str, path: str) -> str:
    """URL of one file of a public GitHub repository at a fixed commit."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


# Converters: upstream file (as downloaded) -> placed file. Only those that are short and
# need nothing beyond the package's dependencies (plus `rdata` for an R .rds).
Converter = Callable[[Path, Path], None]


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


@dataclass(frozen=True)
class DataFile:
    """One file of a data set.

    relpath: path inside the data set's folder (``$GENAILAB_DATA/<folder>/<relpath>``).
    sha256: hash of the verified copy (``PROVENANCE.md`` checksum table); None if unknown.
    url: canonical public URL of the upstream file this file is (or is made from).
    url_hash: pooch-style hash (``"sha256:..."``/``"md5:..."``) of the file at ``url``, when known.
    description: what the file holds.
    converted: True when the placed file is a conversion of the file at ``url``.
    converter: upstream file -> placed file, for conversions short enough to run on download.
    required: whether the loader reads it (``source/`` files are provenance, not required).
    """

    relpath: str
    sha256: str | None
    url: str
    url_hash: str | None
    description: str
    converted: bool = False
    converter: Converter | None = field(default=None, compare=False, repr=False)
    required: bool = True

    @property
    def downloadable(self) -> bool:
        """True when the file can be rebuilt from its URL without manual steps."""
        return not self.converted or self.converter is not None

    @property
    def local_hash(self) -> str | None:
        """sha256 a local copy must have (the upstream hash if the file is byte-identical)."""
        if self.sha256 is not None:
            return f"sha256:{self.sha256}"
        return None if self.converted else self.url_hash


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: where it lives on disk, where it comes from, how to cite it."""

    name: str
    folder: str
    title: str
    files: tuple[DataFile, ...]
    citation: str
    licence: str
    url: str

    def file(self, relpath: str) -> DataFile:
        """The entry for ``relpath``; KeyError listing the data set's files otherwise."""
        for entry in self.files:
            if entry.relpath == relpath:
                return entry
        raise KeyError(
            f"Data set {self.name!r} has no file {relpath!r}; its files are: "
            + ", ".join(f.relpath for f in self.files)
            + "."
        )


def _source(relpath: str, sha256: str, repo: str, commit: str, path: str, description: str) -> DataFile:
    """A byte-identical upstream copy from GitHub (provenance; not read by the loaders)."""
    return DataFile(relpath, sha256, github_raw(repo, commit, path), f"sha256:{sha256}", description, required=False)


_TENX_PBMC3K = "http://cf.10xgenomics.com/samples/cell-exp/1.1.0/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz"
_SCTOOLBOX = ("hmumme/scToolbox", "ae12ae7cc6d26bd109adb9f9d9a335d559c1f024")
_RCPPML = ("zdebruine/RcppML", "3ddacdfc9eb39904e91dc59a85181fbcbd1a52b0", "inst/extdata/pbmc3k_meta.rds")
_RCPPML_SHA = "df8a644145cb254b4ba32ae5f1dde907e28f337ff7f0e50930a05c8f4cd4514e"
_SEURATTOOLS = ("hjames1/seuratTools", "43d0893cfd743194b6913a946563a8d42e22c2bb", "data/ifnb1k.rda")
_SEURATTOOLS_SHA = "cf3ebafc536e2ef9695edd0c65926559d76cfc4d4010234405aa32e6a73f3580"
_MUSCAT = ("HelenaLC/muscat", "017b290b414212c357e184d17edcca27f4302ace", "data/example_sce.rda")
_MUSCAT_SHA = "f66811fa513a01a91dae01bad308e96ed5238277246b911d8e1cd5f4425c3ed9"
_PERTURBENCH = (
    "altoslabs/perturbench",
    "4dd6a03c54ef348f6be6e46e21ea7f80eb2daaa2",
    "src/perturbench/data/resources/devel.h5ad",
)
_PERTURBENCH_SHA = "220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b"
_GI_REPO = "thomasmaxwellnorman/Perturbseq_GI"
_GI_SHARING = "daa246a49fbbe39c05027ecce966b48b3782ea8d"
_GI_EMAPS = "525e2ccd4e1339ab636e8c7539f6d0c772343432"
_GEARS = ("yhr91/GEARS_misc", "04252979b13282c7cacf99e864b8d3d2fcb88f4c", "gears/inference.py")
_SCEPTRE = ("Katsevich-Lab/sceptredata", "ec722d5df90dfd34ace6cc9a5745ab6a5c2a6731", "data/lowmoi_example_data.rda")
_SCEPTRE_SHA = "e3f8ad09bb4b1d0deeeec2850a2d96f8f5062fef31a9ab1cc080e60560421b6a"
_TRADESEQ = ("statOmics/tradeSeq", "66f1a52b740e3aa9d2f53ad11b68481c2f82c5a3", "data/se.rda")
_TRADESEQ_SHA = "1f0dc00f91839c42c9c0628453a4ac80158009e32699cad668e5c18d178ee141"
_ABCDATA = ("MalteThodberg/ABCdata", "5210b3b0517fdd6eaa942dd70a8aebe093635a3c")
_ASMANN_SHA = "423b0d44c35d81e23924e4ecd0d3ab1af8a13678fd52b5218bacd9201b37a774"
_WANG_SHA = "b814299e4ef98ccc1badb3fb3d93e7dcb0ae08e59998c4607a90583caa3d671b"
_SCPERTURB_NORMAN = "https://zenodo.org/records/13350497/files/NormanWeissman2019_filtered.h5ad"

_PBMC3K = DatasetSpec(
    name="pbmc3k",
    folder="pbmc3k",
    title="3k PBMCs from a healthy donor (10x Genomics, Cell Ranger 1.1.0, hg19)",
    files=(
        DataFile(
            "pbmc3k_raw.h5ad",
            "edb522b18fd51ee11078109a2eebc77871f566359e833e513ca50e1789cb37b5",
            _TENX_PBMC3K,
            None,
            "2,700 cells x 32,738 genes, raw UMI counts (float32 CSR), gene symbols made unique.",
            converted=True,
            converter=convert_10x_tarball,
        ),
        DataFile(
            "pbmc3k_seurat_annotations.csv",
            "4b43fda68db3521c3fec66486a31b230dde085a7613065725d525b57dc862c14",
            github_raw(*_RCPPML),
            f"sha256:{_RCPPML_SHA}",
            "Seurat-tutorial cell types (9) for 2,638 barcodes; 62 blank. Made from RcppML's pbmc3k_meta.rds.",
            converted=True,
            converter=convert_rcppml_meta,
        ),
        DataFile(
            "filtered_gene_bc_matrices/hg19/matrix.mtx",
            "a5b2cb919453bdb849ff3b607ad35f539155fb7e6d7f23cc8e50bbe683ac6d98",
            _TENX_PBMC3K,
            None,
            "MatrixMarket counts, genes x cells (regenerated; values equal the 10x original).",
            converted=True,
            converter=_extract_tar_member("filtered_gene_bc_matrices/hg19/matrix.mtx"),
            required=False,
        ),
        _source(
            "filtered_gene_bc_matrices/hg19/genes.tsv",
            "8778dd78085086be6dcafa8334f95f7cf76b25526e8ef2b63186db5127a1492c",
            *_SCTOOLBOX,
            "data/pbmc3k/filtered_gene_bc_matrices/hg19/genes.tsv",
            "10x genes.tsv (Ensembl id, symbol), byte-identical to the 10x original.",
        ),
        _source(
            "filtered_gene_bc_matrices/hg19/barcodes.tsv",
            "58c2a224a2b4258f7e8799a18890bda6d23824b247b80db2b08a0dcc36a4c660",
            *_SCTOOLBOX,
            "data/pbmc3k/filtered_gene_bc_matrices/hg19/barcodes.tsv",
            "10x barcodes.tsv, byte-identical to the 10x original.",
        ),
        _source(
            "source/FHIL.SC.utils_pbmc3k.rda",
            "33af613d2649e90098d32cd7b692122e6b58e9ff28a4f080a79eccba5eff0b99",
            "Fred-Hutch-Innovation-Lab/FHIL.SC.utils",
            "48f278d23e1914c8d9624b5f81ec38e09069d7d2",
            "data/pbmc3k.rda",
            "Seurat v5 object whose counts layer is the 32,738 x 2,700 matrix.",
        ),
        _source("source/RcppML_pbmc3k_meta.rds", _RCPPML_SHA, *_RCPPML, "R list with the cell_type factor."),
    ),
    citation=(
        "10x Genomics (2016), 3k PBMCs from a Healthy Donor; Zheng GXY et al., Massively parallel "
        "digital transcriptional profiling of single cells, Nat Commun 8:14049 (2017)."
    ),
    licence="10x Genomics public data set (CC BY 4.0); labels from RcppML (GPL >= 3).",
    url="https://support.10xgenomics.com/single-cell-gene-expression/datasets/1.1.0/pbmc3k",
)

_KANG_CITATION = (
    "Kang HM, Subramaniam M, Targ S, et al., Multiplexed droplet single-cell RNA-sequencing using "
    "natural genetic variation, Nat Biotechnol 36:89-94 (2018). GEO GSE96583."
)

_KANG_IFNB1K = DatasetSpec(
    name="kang2018_ifnb1k",
    folder="kang2018",
    title="Kang 2018 IFN-beta PBMCs, seuratTools' ~1k-cell subset of SeuratData ifnb",
    files=(
        DataFile(
            "kang2018_ifnb1k_seuratTools.h5ad",
            "94e5b82e52f9b87f5191c9e25133926bf38e338ab2cd1e3c6b3cc20496de5dd5",
            github_raw(*_SEURATTOOLS),
            f"sha256:{_SEURATTOOLS_SHA}",
            "832 cells x 14,053 genes, raw UMI counts; obs stim (CTRL/STIM), seurat_annotations.",
            converted=True,
        ),
        _source("source/seuratTools_ifnb1k.rda", _SEURATTOOLS_SHA, *_SEURATTOOLS, "Seurat v4 object ifnb1k."),
    ),
    citation=_KANG_CITATION,
    licence="GEO public data; subset from seuratTools (MIT).",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583",
)

_KANG_MUSCAT = DatasetSpec(
    name="kang2018_muscat",
    folder="kang2018",
    title="Kang 2018 IFN-beta PBMCs, muscat's example_sce (2 donors x 2 conditions, 5 cell types)",
    files=(
        DataFile(
            "kang2018_muscat_example_sce.h5ad",
            "d333cf5b22861106e8f706f4cbe7f9adaf2cb5b854e3fa9cd42f1f3d4bca423d",
            github_raw(*_MUSCAT),
            f"sha256:{_MUSCAT_SHA}",
            "1,556 cells x 1,267 genes, raw UMI counts; obs cluster_id, sample_id, group_id.",
            converted=True,
        ),
        _source("source/muscat_example_sce.rda", _MUSCAT_SHA, *_MUSCAT, "SingleCellExperiment example_sce."),
    ),
    citation=_KANG_CITATION + " Subset: Crowell HL et al., Nat Commun 11:6077 (2020) (muscat).",
    licence="GEO public data; subset from muscat (GPL-3).",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583",
)

_NORMAN_CITATION = (
    "Norman TM, Horlbeck MA, Replogle JM, et al., Exploring genetic interaction manifolds constructed "
    "from rich single-cell phenotypes, Science 365:786-793 (2019). GEO GSE133344."
)
_NORMAN_GEO = "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE133344"

_NORMAN_SUBSET = DatasetSpec(
    name="norman2019_subset",
    folder="norman2019",
    title="Norman 2019 K562 CRISPRa Perturb-seq, PerturBench development subset (3,375 cells x 500 genes)",
    files=(
        DataFile(
            "norman2019_perturbench_subset.h5ad",
            "d07872c0f3f93ebf608e35eb63d9995bb4011a4f2b6b07342f7ca89fc4790450",
            github_raw(*_PERTURBENCH),
            f"sha256:{_PERTURBENCH_SHA}",
            "Norman cells of PerturBench devel.h5ad; X upstream log1p values; layers['counts'] reconstructed UMIs.",
            converted=True,
            converter=convert_perturbench_devel,
        ),
        DataFile(
            "norman2019_perturbench_subset_pseudobulk_counts.csv.gz",
            "c918000541c62ccd4cc0a2393fb18c0a923842e21ba395a82cd83bf7a140c7fb",
            github_raw(*_PERTURBENCH),
            f"sha256:{_PERTURBENCH_SHA}",
            "Per-condition sums of the reconstructed counts (34 conditions x 500 genes).",
            converted=True,
            required=False,
        ),
        DataFile(
            "norman2019_perturbench_subset_pseudobulk_meanlog.csv.gz",
            "f5db909e295d8ef55d9394a8efc0e811c6d327030a208d4b90886561858883c0",
            github_raw(*_PERTURBENCH),
            f"sha256:{_PERTURBENCH_SHA}",
            "Per-condition means of the upstream log1p values (34 conditions x 500 genes).",
            converted=True,
            required=False,
        ),
        _source(
            "source/perturbench_devel.h5ad", _PERTURBENCH_SHA, *_PERTURBENCH, "PerturBench devel.h5ad (two studies)."
        ),
    ),
    citation=_NORMAN_CITATION
    + " Subset: Wu Y et al., PerturBench: Benchmarking machine learning models for cellular perturbation "
    "analysis, arXiv:2408.10609 (2024).",
    licence="GEO public data; subset from PerturBench (BSD-3-Clause).",
    url=_NORMAN_GEO,
)


def _gi_source(name: str, sha256: str, folder: str) -> DataFile:
    commit = _GI_SHARING if folder == "data_sharing" else _GI_EMAPS
    return _source(
        f"source/Perturbseq_GI_{name}", sha256, _GI_REPO, commit, f"{folder}/{name}", f"Perturbseq_GI {folder}/{name}."
    )


_NORMAN_GI = DatasetSpec(
    name="norman2019_gi",
    folder="norman2019",
    title="Norman 2019 per-gene-pair tables: GI model fits, GI-manifold UMAP, GI types, growth GI map",
    files=(
        DataFile(
            "norman2019_gi_expression_model_fits.csv",
            "1da1340799a41be9b75501302b86fe106e4946770539fe29e4b29bacff57408b",
            github_raw(_GI_REPO, _GI_SHARING, "data_sharing/regr_fits_final.csv"),
            "sha256:664331b7374e1dd22dd42c8a7b3f97aecf01dfb034701818101574fca4441ff3",
            "125 doubles: fits of each double's expression on its singles; gene_a, gene_b, condition added.",
            converted=True,
        ),
        DataFile(
            "norman2019_manifold_umap.csv",
            "2718ce08305c986dbca3c123c32864a690e6fb6f3eb943be1c218378fde0cc25",
            github_raw(_GI_REPO, _GI_SHARING, "data_sharing/optimal_umap_layout.csv"),
            "sha256:e467ca963f2442d6986431ddd05e0f5189661fcb79d1af4fd30d19fafd33ccf3",
            "287 guide pairs (237 conditions) on the GI-manifold UMAP; condition, n_targets added.",
            converted=True,
        ),
        DataFile(
            "norman2019_gi_type_labels_gears.csv",
            "0b0939fc82f866a96c285653f45ea9715a5d78a45a459655d0b5c1f34dfbe681",
            github_raw(*_GEARS),
            None,
            "GI-type labels of 88 doubles (8 types), from the GIs dict of GEARS_misc gears/inference.py.",
            converted=True,
        ),
        DataFile(
            "norman2019_growth_gi_map_long.csv.gz",
            "3dc7de42e352384724674d4e88a86ea7009c258a75e0bf9a83e14bfdd4d22eb4",
            github_raw(_GI_REPO, _GI_EMAPS, "final_emaps/processed_emap.csv"),
            "sha256:bb163917c350ad327c54fb635ccaa85df9618de890f39ec2865ba0ee50e7645e",
            "6,441 gene pairs: growth GI score and growth phenotypes (processed_emap + fitness tables).",
            converted=True,
        ),
        _gi_source(
            "regr_fits_final.csv", "664331b7374e1dd22dd42c8a7b3f97aecf01dfb034701818101574fca4441ff3", "data_sharing"
        ),
        _gi_source(
            "optimal_umap_layout.csv",
            "e467ca963f2442d6986431ddd05e0f5189661fcb79d1af4fd30d19fafd33ccf3",
            "data_sharing",
        ),
        _gi_source(
            "20180821_guides_chosen_for_perturbseq.csv",
            "2f257bf88c65f89587f86d364e37d26d4dde2ebadc1d9497c78118a8f9365668",
            "data_sharing",
        ),
        _gi_source(
            "processed_emap.csv", "bb163917c350ad327c54fb635ccaa85df9618de890f39ec2865ba0ee50e7645e", "final_emaps"
        ),
        _gi_source(
            "processed_fitnesses.csv", "5624edd4fb2aca77aeb9361c98a97823be21586e0fdc553972c76f5c7061b0a2", "final_emaps"
        ),
        _gi_source(
            "processed_perturbseq_emap.csv",
            "87f13d1cd7c055bff653474a1e1f74a6249933b5e49c980638d7fffcf7489f21",
            "final_emaps",
        ),
        _gi_source(
            "processed_perturbseq_fitnesses.csv",
            "2a236f57535405cfb201b68b51138d7aeb6424853d8e300d100192739a938a40",
            "final_emaps",
        ),
        _gi_source(
            "single_fitnesses.csv", "084dc5d26133c3c4d99586bc03a76cf3f4f00045102c57a260a76ca5eaaba6e9", "final_emaps"
        ),
    ),
    citation=_NORMAN_CITATION
    + " GI types: Roohani Y, Huang K, Leskovec J, Predicting transcriptional outcomes of novel multigene "
    "perturbations with GEARS, Nat Biotechnol 42:927-935 (2024).",
    licence="Perturbseq_GI tables (LGPL-3.0); GEARS_misc labels (MIT).",
    url="https://github.com/thomasmaxwellnorman/Perturbseq_GI",
)

_NORMAN_FULL = DatasetSpec(
    name="norman2019",
    folder="norman2019",
    title="Norman 2019 K562 CRISPRa Perturb-seq, full filtered matrix (about 111k cells; scPerturb)",
    files=(
        DataFile(
            "NormanWeissman2019_filtered.h5ad",
            None,
            _SCPERTURB_NORMAN,
            "md5:c870e6967d91c017d9da827bab183cd6",
            "scPerturb's NormanWeissman2019_filtered.h5ad: raw counts, obs perturbation (A, A_B, control), "
            "nCount_RNA. Earlier copy: https://zenodo.org/records/7041849/files/NormanWeissman2019_filtered.h5ad.",
        ),
    ),
    citation=_NORMAN_CITATION
    + " scPerturb: Peidli S, Green TD, Shen C, et al., scPerturb: harmonized single-cell perturbation data, "
    "Nat Methods 21:531-540 (2024).",
    licence="GEO public data; scPerturb copy on Zenodo (see the record's licence).",
    url=_NORMAN_GEO,
)

_PAPALEXI = DatasetSpec(
    name="papalexi2021",
    folder="papalexi2021_eccite",
    title="Papalexi 2021 THP-1 ECCITE-seq CRISPR-KO screen, low-MOI example of sceptredata (299 genes)",
    files=(
        DataFile(
            "papalexi2021_thp1_lowmoi_sceptredata.h5ad",
            "6f4a8981d6359277506da28aedde27748cd90bd35243fd798d8653f0a9df6484",
            github_raw(*_SCEPTRE),
            f"sha256:{_SCEPTRE_SHA}",
            "20,729 cells x 299 genes, raw UMI counts; obsm grna_counts (110 gRNAs); obs target_top, bio_rep.",
            converted=True,
        ),
        _source(
            "source/sceptredata_lowmoi_example_data.rda",
            _SCEPTRE_SHA,
            *_SCEPTRE,
            "sceptredata lowmoi_example_data list.",
        ),
    ),
    citation=(
        "Papalexi E, Mimitou EP, Butler AW, et al., Characterizing the molecular regulation of inhibitory "
        "immune checkpoints with multimodal single-cell screens, Nat Genet 53:322-331 (2021). GEO GSE153056. "
        "Subset: Barry T et al., Genome Biology 25:124 (2024) (sceptre)."
    ),
    licence="GEO public data; subset from sceptredata (MIT).",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE153056",
)

_PAUL15 = DatasetSpec(
    name="paul15",
    folder="paul15_myeloid",
    title="Paul 2015 mouse myeloid progenitors (MARS-seq), tradeSeq's Monocle subset",
    files=(
        DataFile(
            "paul15_tradeSeq_se.h5ad",
            "fc0b25dc162c1837491c285088f4d5ddb3f97b7ac1c99da26daf0b511de72f70",
            github_raw(*_TRADESEQ),
            f"sha256:{_TRADESEQ_SHA}",
            "2,660 cells x 3,004 genes, raw UMI counts; obs Pseudotime, cell_type, cell_type2, batch columns.",
            converted=True,
        ),
        _source("source/tradeSeq_se.rda", _TRADESEQ_SHA, *_TRADESEQ, "SummarizedExperiment se."),
    ),
    citation=(
        "Paul F, Arkin Y, Giladi A, et al., Transcriptional heterogeneity and lineage commitment in myeloid "
        "progenitors, Cell 163:1663-1677 (2015). GEO GSE72857. Subset: Van den Berge K et al., Nat Commun "
        "11:1201 (2020) (tradeSeq)."
    ),
    licence="GEO public data; subset from tradeSeq (Artistic-2.0).",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE72857",
)

_RECOUNT_CITATION = "ReCount: Frazee AC, Langmead B, Leek JT, BMC Bioinformatics 12:449 (2011)."

_BODYMAP2 = DatasetSpec(
    name="bodymap2",
    folder="bulk_tissues",
    title="Illumina Human BodyMap 2.0 bulk RNA-seq (ReCount), 16 tissues + 3 mixtures",
    files=(
        DataFile(
            "bodymap2_asmann_recount.h5ad",
            "23d6af899575159f7c2d4ad4dddfdca453289028e0a698f51ebafd3f4db65f56",
            github_raw(*_ABCDATA, "data/AsmannTissues.rda"),
            f"sha256:{_ASMANN_SHA}",
            "19 samples x 52,580 Ensembl genes, raw read counts (int32); obs tissue.type.",
            converted=True,
        ),
        _source(
            "source/ABCdata_AsmannTissues.rda",
            _ASMANN_SHA,
            *_ABCDATA,
            "data/AsmannTissues.rda",
            "ABCdata AsmannTissues.",
        ),
    ),
    citation="Illumina Human BodyMap 2.0, ArrayExpress E-MTAB-513. " + _RECOUNT_CITATION,
    licence="ArrayExpress public data; ReCount ExpressionSet via ABCdata (GPL-3).",
    url="http://bowtie-bio.sourceforge.net/recount/ExpressionSets/bodymap_eset.RData",
)

_WANG2008 = DatasetSpec(
    name="wang2008",
    folder="bulk_tissues",
    title="Wang 2008 human tissues and cell lines bulk RNA-seq (ReCount)",
    files=(
        DataFile(
            "wang2008_recount.h5ad",
            "3381767554109165df2ba6e184aa139d9fb4c87a618cf48335761e1364db0443",
            github_raw(*_ABCDATA, "data/WangTissues.rda"),
            f"sha256:{_WANG_SHA}",
            "22 samples x 52,580 Ensembl genes, raw read counts (int32); obs cell.type.",
            converted=True,
        ),
        _source("source/ABCdata_WangTissues.rda", _WANG_SHA, *_ABCDATA, "data/WangTissues.rda", "ABCdata WangTissues."),
    ),
    citation=(
        "Wang ET, Sandberg R, Luo S, et al., Alternative isoform regulation in human tissue transcriptomes, "
        "Nature 456:470-476 (2008). " + _RECOUNT_CITATION
    ),
    licence="Public data; ReCount ExpressionSet via ABCdata (GPL-3).",
    url="http://bowtie-bio.sourceforge.net/recount/ExpressionSets/wang_eset.RData",
)

_TMSCC = ("tarohi24/tmscc", "5e0f30fd009fe827ac2263f369c099a5bbc91a48")
_KLEIN_PROFILE_SHA = "476469c10c67eb3802edfe57f86c85c7bf305a8157cd250b4ddb8e722f76173e"
_KLEIN_LABELS_SHA = "d844fc0c7117225d1def14a7a5546a6f41bbbccf5f0016e2c42323c4e5721d6c"

_KLEIN2015 = DatasetSpec(
    name="klein2015",
    folder="klein2015",
    title="Klein 2015 mouse ES cells after LIF withdrawal (inDrops), days 0/2/4/7, tmscc's subset",
    files=(
        DataFile("profile.txt", _KLEIN_PROFILE_SHA, github_raw(*_TMSCC, "tmscc/data/klein/profile.txt"),
                 f"sha256:{_KLEIN_PROFILE_SHA}",
                 "CSV, 900 genes x 1,000 cells (first column gene symbol, header cell-0..cell-999), raw UMI counts."),
        DataFile("labels.txt", _KLEIN_LABELS_SHA, github_raw(*_TMSCC, "tmscc/data/klein/labels.txt"),
                 f"sha256:{_KLEIN_LABELS_SHA}", "1,000 lines: the day (0, 2, 4 or 7) of each cell, in column order."),
    ),
    citation=("Klein AM, Mazutis L, Akartuna I, et al., Droplet barcoding for single-cell transcriptomics applied to "
              "embryonic stem cells, Cell 161:1187-1201 (2015). GEO GSE65525. Subset: tarohi24/tmscc (MIT)."),
    licence="GEO public data; tmscc copy MIT (c) 2018 Wataru Hirota.",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE65525",
)

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _PBMC3K,
        _KANG_IFNB1K,
        _KANG_MUSCAT,
        _NORMAN_SUBSET,
        _NORMAN_GI,
        _NORMAN_FULL,
        _PAPALEXI,
        _PAUL15,
        _KLEIN2015,
        _BODYMAP2,
        _WANG2008,
    )
}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; :class:`UnknownDatasetError` listing valid names otherwise."""
    if name not in REGISTRY:
        raise UnknownDatasetError(f"Unknown data set {name!r}. Valid names are: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def data_dir() -> Path | None:
    """The folder named by ``$GENAILAB_DATA``, or None when the variable is unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The download cache: ``$GENAILAB_CACHE`` or ``~/.cache/genailab``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def offline() -> bool:
    """True when ``GENAILAB_OFFLINE`` is set to a true value (1, true, yes)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_hash(path: str | Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has hash ``expected`` (``"sha256:..."`` or ``"md5:..."``)."""
    algorithm, _, value = expected.partition(":")
    if algorithm == "sha256":
        actual = file_sha256(path)
    else:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        actual = digest.hexdigest()
    if actual != value:
        raise ChecksumError(
            f"{path} has {algorithm} {actual}, but the registry expects {value}. The file is corrupt, truncated "
            "or a different version: delete it and place a verified copy (or let it be downloaded again)."
        )


def _local_candidates(spec: DatasetSpec, relpath: str) -> list[Path]:
    """Where a copy may already be: ``$GENAILAB_DATA/<folder>/`` then the cache."""
    candidates = []
    root = data_dir()
    if root is not None:
        candidates.append(root / spec.folder / relpath)
    candidates.append(cache_dir() / spec.folder / relpath)
    return candidates


def _not_found_message(spec: DatasetSpec, entry: DataFile, looked: list[Path], reason: str) -> str:
    root = data_dir()
    target = (
        (root / spec.folder / entry.relpath)
        if root is not None
        else Path("<GENAILAB_DATA>") / spec.folder / entry.relpath
    )
    if not entry.downloadable:
        how = (
            "The file is made from that upstream file by the conversion in data/README.md; run it and place the result."
        )
    elif entry.converted:
        how = "With downloads allowed the loader fetches and converts it; by hand, see data/README.md."
    else:
        how = "Download that file as is (or let the loader do it, with downloads allowed)."
    return (
        f"Data set {spec.name!r} needs {entry.relpath!r}, which was not found ({reason}). "
        f"Looked in: {', '.join(str(p) for p in looked) or 'nowhere'}. "
        f"Canonical source: {entry.url}. {how} "
        f"Put the file at {target}, i.e. in the folder '{spec.folder}/' under the directory named by the "
        f"{DATA_ENV} environment variable (export {DATA_ENV}=/path/to/data), or pass path= to the loader. "
        f"Data set page: {spec.url}."
    )


def resolve_file(name: str, relpath: str, path: str | Path | None = None, verify: bool = False) -> Path:
    """Local path of file ``relpath`` of data set ``name``, downloading it if needed and allowed.

    path: explicit location: the file itself, or a folder holding ``relpath``.
    verify: check the sha256 of a local copy against the registry (slow for large files).
    Raises :class:`DataNotFoundError` (a FileNotFoundError) with the URL and target folder when
    there is no copy and no download; :class:`ChecksumError` when ``verify`` finds a mismatch.
    """
    spec = get_spec(name)
    entry = spec.file(relpath)
    if path is not None:
        explicit = Path(path).expanduser()
        found = explicit / relpath if explicit.is_dir() else explicit
        if not found.is_file():
            raise DataNotFoundError(_not_found_message(spec, entry, [found], "the explicit path= does not hold it"))
        return _verified(found, entry) if verify else found
    looked = _local_candidates(spec, relpath)
    for candidate in looked:
        if candidate.is_file():
            return _verified(candidate, entry) if verify else candidate
    if offline():
        raise DataNotFoundError(_not_found_message(spec, entry, looked, f"downloads are off: {OFFLINE_ENV}=1"))
    if not entry.downloadable:
        raise DataNotFoundError(_not_found_message(spec, entry, looked, "it cannot be downloaded as such"))
    return download_file(spec, entry, looked)


def _verified(path: Path, entry: DataFile) -> Path:
    if entry.local_hash is not None:
        check_hash(path, entry.local_hash)
    return path


def download_file(spec: DatasetSpec, entry: DataFile, looked: list[Path] | None = None) -> Path:
    """Fetch ``entry`` into the cache with pooch (hash-checked), converting it when needed."""
    import pooch

    target = cache_dir() / spec.folder / entry.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    upstream_dir = cache_dir() / spec.folder / "_upstream"
    try:
        fetched = Path(
            pooch.retrieve(
                entry.url,
                known_hash=entry.url_hash,
                fname=Path(entry.url.split("?")[0]).name if entry.converted else target.name,
                path=upstream_dir if entry.converted else target.parent,
                progressbar=False,
            )
        )
    except Exception as err:  # network errors come in many types; all mean "no copy"
        raise DataNotFoundError(_not_found_message(spec, entry, looked or [], f"the download failed: {err}")) from err
    if not entry.converted:
        if fetched != target:
            fetched.replace(target)
        return target
    partial = target.with_name(target.name + ".partial")
    entry.converter(fetched, partial)
    partial.replace(target)
    return target


def verify_dataset(name: str, path: str | Path | None = None) -> list[Path]:
    """Check the sha256 of every local file of data set ``name``; return the paths checked.

    path: a folder holding the data set's files (default: the normal resolution, no download).
    Required files that are missing raise :class:`DataNotFoundError`; optional ones (``source/``
    provenance copies) are checked when present. A mismatch raises :class:`ChecksumError`.
    """
    spec = get_spec(name)
    checked = []
    for entry in spec.files:
        candidates = (
            [Path(path).expanduser() / entry.relpath] if path is not None else _local_candidates(spec, entry.relpath)
        )
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            if entry.required:
                raise DataNotFoundError(
                    _not_found_message(spec, entry, candidates, "verify_dataset found no local copy")
                )
            continue
        if entry.local_hash is None:
            continue
        check_hash(found, entry.local_hash)
        checked.append(found)
    return checked
