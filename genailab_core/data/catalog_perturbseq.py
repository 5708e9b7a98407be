"""Catalog entries of the Norman 2019 CRISPRa Perturb-seq data sets (subset, GI tables, full matrix).

Split from :mod:`.catalog` (which assembles :data:`~.catalog.REGISTRY`) to keep each module short;
the entries follow ``PROVENANCE.md`` section 6.
"""

from __future__ import annotations

from .converters import convert_perturbench_devel
from .registry import DataFile, DatasetSpec, github_converted, github_raw, github_source

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
_SCPERTURB_NORMAN = "https://zenodo.org/records/13350497/files/NormanWeissman2019_filtered.h5ad"

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
        github_converted(
            "norman2019_perturbench_subset.h5ad", "d07872c0f3f93ebf608e35eb63d9995bb4011a4f2b6b07342f7ca89fc4790450",
            _PERTURBENCH, _PERTURBENCH_SHA,
            "Norman cells of PerturBench devel.h5ad; X upstream log1p values; layers['counts'] reconstructed UMIs.",
            converter=convert_perturbench_devel,
        ),
        github_converted(
            "norman2019_perturbench_subset_pseudobulk_counts.csv.gz", "c918000541c62ccd4cc0a2393fb18c0a923842e21ba395a82cd83bf7a140c7fb",
            _PERTURBENCH, _PERTURBENCH_SHA,
            "Per-condition sums of the reconstructed counts (34 conditions x 500 genes).",
            required=False,
        ),
        github_converted(
            "norman2019_perturbench_subset_pseudobulk_meanlog.csv.gz", "f5db909e295d8ef55d9394a8efc0e811c6d327030a208d4b90886561858883c0",
            _PERTURBENCH, _PERTURBENCH_SHA,
            "Per-condition means of the upstream log1p values (34 conditions x 500 genes).",
            required=False,
        ),
        github_source(
            "source/perturbench_devel.h5ad", _PERTURBENCH_SHA, *_PERTURBENCH, "PerturBench devel.h5ad (two studies)."
        ),
    ),
    citation=_NORMAN_CITATION
    + " Subset: Wu Y et al., PerturBench: Benchmarking machine learning models for cellular perturbation "
    "analysis, arXiv:2408.10609 (2024).",
    licence="GEO public data; subset from PerturBench (BSD-3-Clause).",
    url=_NORMAN_GEO,
)


def _gigithub_source(name: str, sha256: str, folder: str) -> DataFile:
    commit = _GI_SHARING if folder == "data_sharing" else _GI_EMAPS
    return github_source(
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
        _gigithub_source(
            "regr_fits_final.csv", "664331b7374e1dd22dd42c8a7b3f97aecf01dfb034701818101574fca4441ff3", "data_sharing"
        ),
        _gigithub_source(
            "optimal_umap_layout.csv",
            "e467ca963f2442d6986431ddd05e0f5189661fcb79d1af4fd30d19fafd33ccf3",
            "data_sharing",
        ),
        _gigithub_source(
            "20180821_guides_chosen_for_perturbseq.csv",
            "2f257bf88c65f89587f86d364e37d26d4dde2ebadc1d9497c78118a8f9365668",
            "data_sharing",
        ),
        _gigithub_source(
            "processed_emap.csv", "bb163917c350ad327c54fb635ccaa85df9618de890f39ec2865ba0ee50e7645e", "final_emaps"
        ),
        _gigithub_source(
            "processed_fitnesses.csv", "5624edd4fb2aca77aeb9361c98a97823be21586e0fdc553972c76f5c7061b0a2", "final_emaps"
        ),
        _gigithub_source(
            "processed_perturbseq_emap.csv",
            "87f13d1cd7c055bff653474a1e1f74a6249933b5e49c980638d7fffcf7489f21",
            "final_emaps",
        ),
        _gigithub_source(
            "processed_perturbseq_fitnesses.csv",
            "2a236f57535405cfb201b68b51138d7aeb6424853d8e300d100192739a938a40",
            "final_emaps",
        ),
        _gigithub_source(
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
