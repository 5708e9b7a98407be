"""The catalog: every data set the book reads, as a :class:`~.registry.DatasetSpec` in :data:`REGISTRY`.

Each entry records the data set's folder under ``$GENAILAB_DATA``, its canonical public page,
citation and licence, and its files with the sha256 of the verified copy (``PROVENANCE.md``
checksum table) and the canonical URL each comes from. How a file is then found, downloaded
and checked is :mod:`.registry`'s job; the download-time conversions are in :mod:`.converters`
(10x, RcppML, PerturBench) and :mod:`.converters_r` (the R objects). The Norman 2019 entries are
in :mod:`.catalog_perturbseq`.
"""

from __future__ import annotations

from .catalog_perturbseq import _NORMAN_FULL, _NORMAN_GI, _NORMAN_SUBSET
from .converters import _extract_tar_member, convert_10x_tarball, convert_rcppml_meta
from .converters_r import (
    convert_abcdata_bulk,
    convert_muscat_sce,
    convert_sceptre_lowmoi,
    convert_seurat_ifnb1k,
    convert_tradeseq_se,
)
from .registry import DataFile, DatasetSpec, github_converted, github_raw
from .registry import github_source as _source


_TENX_PBMC3K = "http://cf.10xgenomics.com/samples/cell-exp/1.1.0/pbmc3k/pbmc3k_filtered_gene_bc_matrices.tar.gz"
_SCTOOLBOX = ("hmumme/scToolbox", "ae12ae7cc6d26bd109adb9f9d9a335d559c1f024")
_RCPPML = ("zdebruine/RcppML", "3ddacdfc9eb39904e91dc59a85181fbcbd1a52b0", "inst/extdata/pbmc3k_meta.rds")
_RCPPML_SHA = "df8a644145cb254b4ba32ae5f1dde907e28f337ff7f0e50930a05c8f4cd4514e"
_SEURATTOOLS = ("hjames1/seuratTools", "43d0893cfd743194b6913a946563a8d42e22c2bb", "data/ifnb1k.rda")
_SEURATTOOLS_SHA = "cf3ebafc536e2ef9695edd0c65926559d76cfc4d4010234405aa32e6a73f3580"
_MUSCAT = ("HelenaLC/muscat", "017b290b414212c357e184d17edcca27f4302ace", "data/example_sce.rda")
_MUSCAT_SHA = "f66811fa513a01a91dae01bad308e96ed5238277246b911d8e1cd5f4425c3ed9"
_SCEPTRE = ("Katsevich-Lab/sceptredata", "ec722d5df90dfd34ace6cc9a5745ab6a5c2a6731", "data/lowmoi_example_data.rda")
_SCEPTRE_SHA = "e3f8ad09bb4b1d0deeeec2850a2d96f8f5062fef31a9ab1cc080e60560421b6a"
_TRADESEQ = ("statOmics/tradeSeq", "66f1a52b740e3aa9d2f53ad11b68481c2f82c5a3", "data/se.rda")
_TRADESEQ_SHA = "1f0dc00f91839c42c9c0628453a4ac80158009e32699cad668e5c18d178ee141"
_ABCDATA = ("MalteThodberg/ABCdata", "5210b3b0517fdd6eaa942dd70a8aebe093635a3c")
_ASMANN_SHA = "423b0d44c35d81e23924e4ecd0d3ab1af8a13678fd52b5218bacd9201b37a774"
_WANG_SHA = "b814299e4ef98ccc1badb3fb3d93e7dcb0ae08e59998c4607a90583caa3d671b"

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
        github_converted(
            "pbmc3k_seurat_annotations.csv", "4b43fda68db3521c3fec66486a31b230dde085a7613065725d525b57dc862c14",
            _RCPPML, _RCPPML_SHA,
            "Seurat-tutorial cell types (9) for 2,638 barcodes; 62 blank. Made from RcppML's pbmc3k_meta.rds.",
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
        github_converted(
            "kang2018_ifnb1k_seuratTools.h5ad", "94e5b82e52f9b87f5191c9e25133926bf38e338ab2cd1e3c6b3cc20496de5dd5",
            _SEURATTOOLS, _SEURATTOOLS_SHA,
            "832 cells x 14,053 genes, raw UMI counts; obs stim (CTRL/STIM), seurat_annotations.",
            converter=convert_seurat_ifnb1k,
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
        github_converted(
            "kang2018_muscat_example_sce.h5ad", "d333cf5b22861106e8f706f4cbe7f9adaf2cb5b854e3fa9cd42f1f3d4bca423d",
            _MUSCAT, _MUSCAT_SHA,
            "1,556 cells x 1,267 genes, raw UMI counts; obs cluster_id, sample_id, group_id.",
            converter=convert_muscat_sce,
        ),
        _source("source/muscat_example_sce.rda", _MUSCAT_SHA, *_MUSCAT, "SingleCellExperiment example_sce."),
    ),
    citation=_KANG_CITATION + " Subset: Crowell HL et al., Nat Commun 11:6077 (2020) (muscat).",
    licence="GEO public data; subset from muscat (GPL-3).",
    url="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583",
)

_PAPALEXI = DatasetSpec(
    name="papalexi2021",
    folder="papalexi2021_eccite",
    title="Papalexi 2021 THP-1 ECCITE-seq CRISPR-KO screen, low-MOI example of sceptredata (299 genes)",
    files=(
        github_converted(
            "papalexi2021_thp1_lowmoi_sceptredata.h5ad", "6f4a8981d6359277506da28aedde27748cd90bd35243fd798d8653f0a9df6484",
            _SCEPTRE, _SCEPTRE_SHA,
            "20,729 cells x 299 genes, raw UMI counts; obsm grna_counts (110 gRNAs); obs target_top, bio_rep.",
            converter=convert_sceptre_lowmoi,
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
        github_converted(
            "paul15_tradeSeq_se.h5ad", "fc0b25dc162c1837491c285088f4d5ddb3f97b7ac1c99da26daf0b511de72f70",
            _TRADESEQ, _TRADESEQ_SHA,
            "2,660 cells x 3,004 genes, raw UMI counts; obs Pseudotime, cell_type, cell_type2, batch columns.",
            converter=convert_tradeseq_se,
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
        github_converted(
            "bodymap2_asmann_recount.h5ad", "23d6af899575159f7c2d4ad4dddfdca453289028e0a698f51ebafd3f4db65f56",
            (*_ABCDATA, "data/AsmannTissues.rda"), _ASMANN_SHA,
            "19 samples x 52,580 Ensembl genes, raw read counts (int32); obs tissue.type.",
            converter=convert_abcdata_bulk,
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
        github_converted(
            "wang2008_recount.h5ad", "3381767554109165df2ba6e184aa139d9fb4c87a618cf48335761e1364db0443",
            (*_ABCDATA, "data/WangTissues.rda"), _WANG_SHA,
            "22 samples x 52,580 Ensembl genes, raw read counts (int32); obs cell.type.",
            converter=convert_abcdata_bulk,
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
        DataFile(
            "profile.txt",
            _KLEIN_PROFILE_SHA,
            github_raw(*_TMSCC, "tmscc/data/klein/profile.txt"),
            f"sha256:{_KLEIN_PROFILE_SHA}",
            "CSV, 900 genes x 1,000 cells (first column gene symbol, header cell-0..cell-999), raw UMI counts.",
        ),
        DataFile(
            "labels.txt",
            _KLEIN_LABELS_SHA,
            github_raw(*_TMSCC, "tmscc/data/klein/labels.txt"),
            f"sha256:{_KLEIN_LABELS_SHA}",
            "1,000 lines: the day (0, 2, 4 or 7) of each cell, in column order.",
        ),
    ),
    citation=(
        "Klein AM, Mazutis L, Akartuna I, et al., Droplet barcoding for single-cell transcriptomics applied to "
        "embryonic stem cells, Cell 161:1187-1201 (2015). GEO GSE65525. Subset: tarohi24/tmscc (MIT)."
    ),
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

