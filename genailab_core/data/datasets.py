"""Loaders for the book's real data sets, each returning counts in one harmonized layout.

Every loader returns an :class:`anndata.AnnData` with

- ``.X``: raw integer counts, ``scipy.sparse.csr_matrix`` float32, (cells, genes);
- ``.obs``: the harmonized columns that apply (categorical labels): ``cell_type``,
  ``condition``, ``perturbation``, ``batch``, ``library_size`` (float64 total counts per cell),
  next to the source's own columns;
- ``.uns["dataset"]``: the registry name; unique ``.var_names``.

Files are found by :func:`genailab_core.data.registry.resolve_file` (explicit ``path=``,
``$GENAILAB_DATA``, cache, download). ``../shared/data/PROVENANCE.md`` and ``data/README.md``
describe each file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .preprocess import check_counts, library_size, row_sums
from .registry import get_spec, resolve_file

CONTROL = "control"
KANG_CONDITIONS = MappingProxyType({"CTRL": "control", "STIM": "stimulated", "ctrl": "control", "stim": "stimulated"})
# HGNC renamed KIAA1804 to MAP3K21; the PerturBench subset uses the new symbol.
NORMAN_SYMBOL_UPDATES = MappingProxyType({"KIAA1804": "MAP3K21"})
NORMAN_OBS_COLUMNS = (
    "perturbation",
    "condition",
    "target_1",
    "target_2",
    "n_targets",
    "is_control",
    "library_size",
    "panel_counts",
)


def _counts_csr(matrix, what: str) -> sp.csr_matrix:
    """``matrix`` as CSR float32 after checking that it holds raw integer counts."""
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    check_counts(counts, what=what)
    return counts


def _finish(adata: ad.AnnData, name: str) -> ad.AnnData:
    """Record the registry name and make gene names unique."""
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    adata.uns["dataset"] = name
    return adata


def _companion(name: str, relpath: str, path: str | Path | None) -> Path:
    """Resolve a second file of a data set: next to an explicit file first, then the normal order."""
    if path is not None:
        explicit = Path(path).expanduser()
        folder = explicit if explicit.is_dir() else explicit.parent
        if (folder / relpath).is_file():
            return folder / relpath
    return resolve_file(name, relpath)


def _ordered_categorical(values: pd.Series, first: Iterable[str] = ()) -> pd.Categorical:
    """Categorical whose categories are ``first`` (if present), then the rest by decreasing count, then name."""
    counts = values.value_counts()
    leading = [c for c in first if c in counts.index]
    rest = sorted((c for c in counts.index if c not in leading), key=lambda c: (-counts[c], c))
    return pd.Categorical(values, categories=leading + rest)


def load_pbmc3k(path: str | Path | None = None, labelled_only: bool = True) -> ad.AnnData:
    """10x PBMC 3k: 2,700 cells x 32,738 genes, with the Seurat tutorial's 9 cell types.

    path: ``pbmc3k_raw.h5ad`` or a folder holding it and ``pbmc3k_seurat_annotations.csv``.
    labelled_only: keep the 2,638 labelled cells (the standard tutorial QC); False keeps all
        2,700 (``cell_type`` NaN for 62).
    obs: ``cell_type`` (categorical, 9 labels by decreasing size: Naive CD4 T 697 ... Platelet 14),
    ``library_size`` (total UMIs of the cell).
    """
    name = "pbmc3k"
    adata = ad.read_h5ad(resolve_file(name, "pbmc3k_raw.h5ad", path))
    labels = pd.read_csv(_companion(name, "pbmc3k_seurat_annotations.csv", path), dtype=str)
    mapping = labels.set_index("barcode")["seurat_annotation"]
    missing = adata.obs_names.difference(mapping.index)
    if len(missing):
        raise ValueError(
            f"{len(missing)} barcodes of pbmc3k_raw.h5ad (e.g. {missing[0]}) are not in the annotation CSV; "
            "the two files do not belong together. Place the files listed in data/README.md."
        )
    adata.X = _counts_csr(adata.X, "pbmc3k X")
    labels_per_cell = pd.Series(mapping.reindex(adata.obs_names).to_numpy(), index=adata.obs_names)
    adata.obs["cell_type"] = _ordered_categorical(labels_per_cell)
    adata.obs["library_size"] = library_size(adata)
    if labelled_only:
        adata = adata[adata.obs["cell_type"].notna().to_numpy()].copy()
        adata.obs["cell_type"] = adata.obs["cell_type"].cat.remove_unused_categories()
    return _finish(adata, name)


def load_kang(subset: str = "ifnb1k", path: str | Path | None = None) -> ad.AnnData:
    """Kang et al. 2018 IFN-beta stimulated PBMCs (small public subsets).

    subset: ``"ifnb1k"`` (832 cells x 14,053 genes, seuratTools' random subset of SeuratData
        ``ifnb``: 6 cell types) or ``"muscat"`` (1,556 cells x 1,267 filtered genes, muscat's
        ``example_sce``: 5 cell types, donors 101 and 107, each control and stimulated).
    obs: ``condition`` ("control"/"stimulated", from ``stim`` or ``group_id``), ``cell_type``
    (``seurat_annotations`` or ``cluster_id``), ``batch``, ``library_size`` (total UMIs over the
    genes present: for muscat these are 1,267 filtered genes).

    ``batch`` is the donor for muscat (from ``sample_id``: "101", "107"). The ifnb1k subset
    records no donor: its ``orig.ident`` (IMMUNE_CTRL/IMMUNE_STIM) only repeats the condition,
    so ``batch`` is the single category "unknown" there.
    """
    if subset == "ifnb1k":
        name, relpath, condition_col, type_col = (
            "kang2018_ifnb1k",
            "kang2018_ifnb1k_seuratTools.h5ad",
            "stim",
            "seurat_annotations",
        )
    elif subset == "muscat":
        name, relpath, condition_col, type_col = (
            "kang2018_muscat",
            "kang2018_muscat_example_sce.h5ad",
            "group_id",
            "cluster_id",
        )
    else:
        raise ValueError(f"Unknown Kang subset {subset!r}; use subset='ifnb1k' or subset='muscat'.")
    adata = ad.read_h5ad(resolve_file(name, relpath, path))
    adata.X = _counts_csr(adata.X, f"{name} X")
    raw_condition = adata.obs[condition_col].astype(str)
    unknown = set(raw_condition) - set(KANG_CONDITIONS)
    if unknown:
        raise ValueError(
            f"Unexpected values {sorted(unknown)} in obs[{condition_col!r}]; expected CTRL/STIM or ctrl/stim."
        )
    adata.obs["condition"] = pd.Categorical(raw_condition.map(KANG_CONDITIONS), categories=["control", "stimulated"])
    adata.obs["cell_type"] = _ordered_categorical(adata.obs[type_col].astype(str))
    if subset == "muscat":
        donor = adata.obs["sample_id"].astype(str).str.replace(r"^(ctrl|stim)", "", regex=True)
        adata.obs["batch"] = pd.Categorical(donor)
    else:
        adata.obs["batch"] = pd.Categorical(["unknown"] * adata.n_obs)
    adata.obs["library_size"] = library_size(adata)
    return _finish(adata, name)


def _perturbation_categories(labels: Iterable[str]) -> list[str]:
    """Category order for perturbations: "control", then singles, then combinations, each by name."""
    unique = set(labels)
    ordered = [CONTROL] if CONTROL in unique else []
    rest = sorted(unique - {CONTROL}, key=lambda p: (p.count("+"), p))
    return ordered + rest


def perturbation_table(labels: Iterable[str]) -> pd.DataFrame:
    """Parse condition strings ("control", "A", "A+B") into targets.

    Returns one row per label with ``target_1``, ``target_2`` ("" when absent), ``n_targets``
    and ``is_control``; the string parsing of perturbations happens only here, at the data boundary.
    """
    labels = pd.Series(list(labels), dtype=object).astype(str)
    is_control = labels.eq(CONTROL)
    tokens = labels.where(~is_control, "").str.split("+")
    n_targets = tokens.map(lambda t: len([g for g in t if g]))
    if (n_targets > 2).any():
        raise ValueError(
            f"Perturbations with more than two targets ({labels[n_targets > 2].iloc[0]!r}) are not supported; "
            "the layout has target_1 and target_2 only."
        )
    return pd.DataFrame(
        {
            "target_1": tokens.map(lambda t: t[0]),
            "target_2": tokens.map(lambda t: t[1] if len(t) > 1 else ""),
            "n_targets": n_targets.astype(np.int64),
            "is_control": is_control.to_numpy(),
        }
    )


def _norman_obs(labels: pd.Series, total_counts: np.ndarray, panel_counts: np.ndarray) -> pd.DataFrame:
    """The harmonized Norman obs (:data:`NORMAN_OBS_COLUMNS`) from condition strings and totals."""
    parsed = perturbation_table(labels)
    categories = _perturbation_categories(labels)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels.astype(str), categories=categories),
            "condition": pd.Categorical(labels.astype(str), categories=categories),
            "target_1": pd.Categorical(parsed["target_1"]),
            "target_2": pd.Categorical(parsed["target_2"]),
            "n_targets": parsed["n_targets"].to_numpy(),
            "is_control": parsed["is_control"].to_numpy(),
            "library_size": np.asarray(total_counts, dtype=np.float64),
            "panel_counts": np.asarray(panel_counts, dtype=np.float64),
        },
        index=pd.Index(labels.index.astype(str), name=None),
    )
    return obs


def load_norman(path: str | Path | None = None) -> ad.AnnData:
    """Norman et al. 2019 CRISPRa Perturb-seq, PerturBench's subset: 3,375 cells x 500 genes.

    34 conditions: control (100 cells), 18 singles and 15 doubles (about 100 cells each).
    X: the integer UMI counts reconstructed exactly from the upstream log1p values (layer
    ``counts`` of the file; ``PROVENANCE.md`` 6a), for these 500 HVGs only.
    obs (:data:`NORMAN_OBS_COLUMNS`): ``perturbation`` and ``condition`` ("control", "A", "A+B"),
    ``target_1``, ``target_2`` ("" when absent), ``n_targets`` (0/1/2), ``is_control``,
    ``library_size`` (= ``ncounts``, the full-transcriptome UMI total of the cell; median 13,523),
    ``panel_counts`` (UMIs over the 500 genes).
    """
    name = "norman2019_subset"
    source = ad.read_h5ad(resolve_file(name, "norman2019_perturbench_subset.h5ad", path))
    counts = _counts_csr(source.layers["counts"], "norman2019 layers['counts']")
    labels = source.obs["condition"].astype(str)
    obs = _norman_obs(labels, source.obs["ncounts"].to_numpy(), row_sums(counts))
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=source.var_names.astype(str).rename(None)))
    return _finish(adata, name)


def _norman_labels(obs: pd.DataFrame, symbol_updates: Mapping[str, str]) -> pd.Series:
    """Condition strings "control"/"A"/"A+B" from scPerturb (``perturbation``: "A_B", "control")
    or GEARS (``condition``: "A+ctrl", "A+B", "ctrl") layouts."""
    if "perturbation" in obs:
        raw = obs["perturbation"]
    elif "condition" in obs:
        raw = obs["condition"]
    else:
        raise ValueError(
            "The file has neither obs['perturbation'] (scPerturb layout) nor obs['condition'] (GEARS layout); "
            "pass scPerturb's NormanWeissman2019_filtered.h5ad."
        )
    if raw.isna().any():
        raise ValueError(f"{int(raw.isna().sum())} cells have no perturbation label; drop them before loading.")

    def parse(label: str) -> str:
        tokens = [t for t in label.replace("_", "+").split("+") if t and t not in {"ctrl", CONTROL}]
        return "+".join(symbol_updates.get(t, t) for t in tokens) if tokens else CONTROL

    mapping = {label: parse(label) for label in pd.unique(raw.astype(str))}
    return pd.Series(raw.astype(str).map(mapping).to_numpy(), index=obs.index)


def load_norman_full(
    path: str | Path | None = None, symbol_updates: Mapping[str, str] = NORMAN_SYMBOL_UPDATES
) -> ad.AnnData:
    """Norman et al. 2019, the full matrix, in the layout of :func:`load_norman`.

    path: scPerturb's ``NormanWeissman2019_filtered.h5ad`` (obs ``perturbation`` with ``_``
        between targets and "control", ``nCount_RNA``; X raw counts), or a GEARS-style file
        (obs ``condition`` "A+ctrl"/"A+B"/"ctrl") that holds raw counts in X or
        ``layers['counts']``. Default: resolved and downloaded from scPerturb's Zenodo record.
    symbol_updates: renames of target symbols (default KIAA1804 -> MAP3K21, as in the subset).
    """
    name = "norman2019"
    source = ad.read_h5ad(resolve_file(name, "NormanWeissman2019_filtered.h5ad", path))
    matrix = source.layers.get("counts", source.X)
    try:
        counts = _counts_csr(matrix, "Norman X")
    except ValueError as err:
        raise ValueError(
            f"{err} GEARS' norman file stores log-normalized values only; use scPerturb's "
            "NormanWeissman2019_filtered.h5ad (raw counts) instead."
        ) from err
    labels = _norman_labels(source.obs, symbol_updates)
    panel = row_sums(counts)
    total_column = next((c for c in ("nCount_RNA", "ncounts") if c in source.obs), None)
    total = source.obs[total_column].to_numpy() if total_column else panel
    obs = _norman_obs(labels, total, panel)
    adata = ad.AnnData(X=counts, obs=obs, var=source.var.copy())
    return _finish(adata, name)


def load_norman_gi_tables(path: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Norman 2019 per-gene-pair tables (paper's Perturbseq_GI repository and GEARS labels).

    path: folder holding the four files. Keys:
    ``expression_model_fits`` (125 doubles: fit of each double on its singles, ``emap`` growth GI),
    ``manifold_umap`` (287 guide pairs on the GI-manifold UMAP, with ``cluster``),
    ``gi_type_labels`` (88 doubles, 8 GEARS GI types), ``growth_gi_map`` (6,441 gene pairs).
    """
    name = "norman2019_gi"
    if path is not None and Path(path).is_file():
        raise ValueError(f"path={path} is a file; pass the folder that holds the four Norman GI tables.")
    files = {
        "expression_model_fits": "norman2019_gi_expression_model_fits.csv",
        "manifold_umap": "norman2019_manifold_umap.csv",
        "gi_type_labels": "norman2019_gi_type_labels_gears.csv",
        "growth_gi_map": "norman2019_growth_gi_map_long.csv.gz",
    }
    return {key: pd.read_csv(resolve_file(name, relpath, path)) for key, relpath in files.items()}


def load_papalexi(path: str | Path | None = None) -> ad.AnnData:
    """Papalexi et al. 2021 THP-1 CRISPR knock-out screen (sceptredata's low-MOI example).

    20,729 cells x 299 genes (a gene panel; CD274 and most targets are not measured).
    obs: ``perturbation`` and ``condition`` (= ``target_top``, the target of the gRNA with the
    most UMIs in the cell; "non-targeting" -> "control"; 25 targets), ``batch`` (``bio_rep``),
    ``library_size`` (= ``n_counts_panel``: UMIs over the 299 panel genes, NOT the
    full-transcriptome library size, which the source does not hold).
    obsm ``grna_counts`` (cells x 110 gRNAs) and uns ``grna_ids``/``grna_targets`` are kept.
    """
    name = "papalexi2021"
    adata = ad.read_h5ad(resolve_file(name, "papalexi2021_thp1_lowmoi_sceptredata.h5ad", path))
    adata.X = _counts_csr(adata.X, "papalexi X")
    target = adata.obs["target_top"].astype(str).replace({"non-targeting": CONTROL})
    categories = _perturbation_categories(target)
    adata.obs["perturbation"] = pd.Categorical(target, categories=categories)
    adata.obs["condition"] = pd.Categorical(target, categories=categories)
    adata.obs["batch"] = pd.Categorical(adata.obs["bio_rep"].astype(str))
    adata.obs["library_size"] = adata.obs["n_counts_panel"].to_numpy(dtype=np.float64)
    return _finish(adata, name)


def load_paul15(path: str | Path | None = None) -> ad.AnnData:
    """Paul et al. 2015 mouse myeloid progenitors (MARS-seq), tradeSeq's subset: 2,660 x 3,004.

    obs: ``cell_type`` (the 7 fine types of ``cell_type2``: Erythrocyte, Monocytes, Basophils,
    GMP, Neutrophils, Multipotent progenitors, Megakaryocytes), ``cell_type_coarse`` (CMP, GMP,
    erythroid), ``pseudotime`` (Monocle's, an ordering, not real time), ``batch``
    (``Amp_batch_ID``, the 16 amplification batches; ``Seq_batch_ID`` groups them into 2
    sequencing runs and is kept), ``library_size`` (UMIs over the 3,004 genes).
    """
    name = "paul15"
    adata = ad.read_h5ad(resolve_file(name, "paul15_tradeSeq_se.h5ad", path))
    adata.X = _counts_csr(adata.X, "paul15 X")
    adata.obs["cell_type_coarse"] = _ordered_categorical(adata.obs["cell_type"].astype(str))
    adata.obs["cell_type"] = _ordered_categorical(adata.obs["cell_type2"].astype(str))
    adata.obs["pseudotime"] = adata.obs["Pseudotime"].to_numpy(dtype=np.float64)
    adata.obs["batch"] = pd.Categorical(adata.obs["Amp_batch_ID"].astype(str))
    adata.obs["library_size"] = library_size(adata)
    return _finish(adata, name)


def load_bulk(which: str = "bodymap2", path: str | Path | None = None) -> ad.AnnData:
    """Bulk RNA-seq read counts with tissue labels (ReCount), samples x 52,580 Ensembl genes.

    which: ``"bodymap2"`` (Illumina Human BodyMap 2.0: 16 tissues, one sample each, + 3
        mixtures; 19 samples) or ``"wang2008"`` (Wang et al. 2008: tissues and cell lines; 22).
    obs: ``tissue`` and ``cell_type`` (the same labels, from ``tissue.type`` or ``cell.type``),
    ``library_size`` (total reads, millions).
    """
    if which == "bodymap2":
        name, relpath, label_col = "bodymap2", "bodymap2_asmann_recount.h5ad", "tissue.type"
    elif which == "wang2008":
        name, relpath, label_col = "wang2008", "wang2008_recount.h5ad", "cell.type"
    else:
        raise ValueError(f"Unknown bulk data set {which!r}; use which='bodymap2' or which='wang2008'.")
    adata = ad.read_h5ad(resolve_file(name, relpath, path))
    adata.X = _counts_csr(adata.X, f"{name} X")
    labels = _ordered_categorical(adata.obs[label_col].astype(str))
    adata.obs["tissue"] = labels
    adata.obs["cell_type"] = labels.copy()
    adata.obs["library_size"] = library_size(adata)
    return _finish(adata, name)


def _loader_for(name: str) -> Callable[..., object]:
    """The loader function of a registry name."""
    from .timecourse import load_klein2015
    loaders: dict[str, Callable[..., object]] = {
        "pbmc3k": load_pbmc3k,
        "kang2018_ifnb1k": lambda **kw: load_kang(subset="ifnb1k", **kw),
        "kang2018_muscat": lambda **kw: load_kang(subset="muscat", **kw),
        "norman2019_subset": load_norman,
        "norman2019": load_norman_full,
        "norman2019_gi": load_norman_gi_tables,
        "papalexi2021": load_papalexi,
        "paul15": load_paul15,
        "klein2015": load_klein2015,
        "bodymap2": lambda **kw: load_bulk(which="bodymap2", **kw),
        "wang2008": lambda **kw: load_bulk(which="wang2008", **kw),
    }
    return loaders[name]


def load_dataset(name: str, **kwargs) -> ad.AnnData | dict[str, pd.DataFrame]:
    """Load a data set by registry name (``"pbmc3k"``, ``"kang2018_ifnb1k"``, ...).

    kwargs go to the loader (e.g. ``path=``). ``"norman2019_gi"`` returns its dict of tables.
    Unknown names raise :class:`~genailab_core.data.registry.UnknownDatasetError` listing valid names.
    """
    get_spec(name)
    return _loader_for(name)(**kwargs)
