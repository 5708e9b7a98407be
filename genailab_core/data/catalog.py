"""The catalog: every data set the book reads, as a :class:`~.registry.DatasetSpec` in :data:`REGISTRY`.

Each entry records the data set's folder under ``$GENAILAB_DATA``, its canonical public page,
citation and licence, and its files with the sha256 of the verified copy (``PROVENANCE.md``
checksum table) and the canonical URL each comes from. How a file is then found, downloaded
and checked is :mod:`.registry`'s job; the download-time conversions are in :mod:`.converters`.
"""

from __future__ import annotations

from .converters import _extract_tar_member, convert_10x_tarball, convert_perturbench_devel, convert_rcppml_meta
from .registry import DataFile, DatasetSpec, github_raw

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

