"""A Perturb-seq screen ready to benchmark: loading, pseudobulk, DE genes, interaction labels.

    adata = load_screen("norman2019_subset")                 # counts in .X, obs "condition"
    data = prepare_perturbation_data(adata, "norman2019_subset", synergy=norman_synergy_labels(gi))

The pseudobulk profile of a condition p is the mean log-normalized expression of its cells,
``y_pg = mean_c log1p(1e4 x_cg / l_c)`` (chapter 17); DE genes rank every gene of a condition against
the control with scanpy's ``rank_genes_groups`` (GEARS' protocol). Gene selection (HVGs) is on counts;
:func:`hvg_genes` takes the cells to select on, so that a benchmark can select on training cells only.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..metrics.perturbation import top_expressed_genes
from .labels import CONTROL, TargetVocabulary, targets_of
from .preprocess import log_normalize_counts, select_hvg
from .simulate import INTERACTION_TYPES, InteractionMix

TARGET_SUM = 1e4

# Norman et al. 2019's eight GI types (GEARS' labels) -> the simulator's five.
NORMAN_GI_TO_SIMULATOR = {
    "ADDITIVE": "additive",
    "SYNERGY_SIMILAR_PHENO": "synergy", "SYNERGY_DISSIMILAR_PHENO": "synergy", "POTENTIATION": "synergy",
    "SUPPRESSOR": "suppression", "REDUNDANT": "suppression",
    "EPISTASIS": "epistasis", "NEOMORPHIC": "neomorphic",
}
SYNERGY_TYPES = ("SYNERGY_SIMILAR_PHENO", "SYNERGY_DISSIMILAR_PHENO", "POTENTIATION", "synergy")


# -- cells -> profiles -----------------------------------------------------------------------------
def log_normalized(adata: ad.AnnData, library_key: str = "library_size") -> sp.csr_matrix:
    """log1p(1e4 x / l): (cells, genes) CSR, with l from ``obs[library_key]`` (else row sums)."""
    x = sp.csr_matrix(adata.X)
    library = (adata.obs[library_key].to_numpy(dtype=np.float64) if library_key in adata.obs
               else np.asarray(x.sum(1)).ravel())
    if (library <= 0).any():
        raise ValueError(f"{int((library <= 0).sum())} cells have library size <= 0; drop empty cells first.")
    return log_normalize_counts(x, library, TARGET_SUM)


def pseudobulk(adata: ad.AnnData, key: str = "condition", library_key: str = "library_size",
               log_values: sp.csr_matrix | None = None) -> pd.DataFrame:
    """Mean log-normalized expression per condition: (conditions, genes), conditions in order of appearance.

    log_values: ``log_normalized(adata, library_key)`` when the caller has it already (it is not recomputed)."""
    import scanpy as sc

    if key not in adata.obs:
        raise KeyError(f"obs has no column {key!r}; available: {list(adata.obs.columns)}.")
    labels = adata.obs[key].astype(str).to_numpy()
    names = list(pd.unique(labels))
    values = log_normalized(adata, library_key) if log_values is None else log_values
    cells = ad.AnnData(X=values, var=pd.DataFrame(index=adata.var_names.astype(str)),
                       obs=pd.DataFrame({key: pd.Categorical(labels, categories=names)}, index=adata.obs_names))
    means = sc.get.aggregate(cells, by=key, func="mean")                        # (conditions, genes)
    return pd.DataFrame(means.layers["mean"], index=means.obs_names.astype(str),
                        columns=cells.var_names).loc[names]


# -- loading and gene selection --------------------------------------------------------------------------
def hvg_genes(adata: ad.AnnData, n_genes: int, cells: np.ndarray | None = None) -> pd.Index:
    """The ``n_genes`` most variable genes (seurat_v3, on counts) of ``cells`` (indices or a boolean
    mask; None: all cells), plus every measured target gene, in the order of ``adata.var_names``.

    Selecting on all cells is transductive (a test perturbation's cells shape the gene set);
    pass the training cells of a split to keep its test perturbations out of the selection.
    """
    targets = {g for label in adata.obs["condition"].astype(str).unique() for g in targets_of(label)}
    if adata.n_vars <= n_genes:
        return pd.Index(adata.var_names.astype(str))
    hvg = set(select_hvg(adata, n_top_genes=n_genes, fit_on=cells).var_names)
    return pd.Index([g for g in adata.var_names.astype(str) if g in hvg or g in targets])


def load_screen(name: str, max_genes: int = 5000, path=None) -> ad.AnnData:
    """A perturbation screen by name, counts in .X and obs ``condition``: "norman2019_subset",
    "norman2019" (the full matrix, cut to ``max_genes`` highly variable genes plus every
    measured target gene, chosen on all cells, as GEARS does) or "papalexi2021".

    The gene sets are shared by every split: the subset's 500 genes were chosen upstream
    (PerturBench) and the full matrix's HVGs here, both on all cells, test perturbations included.
    """
    from .datasets import load_norman, load_norman_full, load_papalexi

    loaders = {"norman2019_subset": load_norman, "norman2019": load_norman_full, "papalexi2021": load_papalexi}
    if name not in loaders:
        raise ValueError(f"Unknown screen {name!r}; use one of {sorted(loaders)}.")
    adata = loaders[name](path=path)
    if adata.n_vars > max_genes:
        adata = adata[:, hvg_genes(adata, max_genes)].copy()
    return adata


# -- interaction labels ---------------------------------------------------------------------------------
def interaction_mix_from_labels(gi_types: Iterable[str]) -> InteractionMix:
    """The simulator's :class:`InteractionMix` in the proportions of Norman's GI-type labels."""
    mapped = pd.Series([NORMAN_GI_TO_SIMULATOR.get(str(t)) for t in gi_types])
    if mapped.isna().any():
        raise ValueError(f"Unknown GI types {sorted(set(np.asarray(gi_types)[mapped.isna().to_numpy()]))}; "
                         f"known: {sorted(NORMAN_GI_TO_SIMULATOR)}.")
    shares = mapped.value_counts(normalize=True)
    return InteractionMix(**{t: float(shares.get(t, 0.0)) for t in INTERACTION_TYPES})


def norman_synergy_labels(gi_type_labels: pd.DataFrame) -> pd.Series:
    """double ("A+B") -> True for Norman's synergy types (synergy similar/dissimilar, potentiation)."""
    return gi_type_labels.set_index("condition")["gi_type"].isin(SYNERGY_TYPES)


# -- DE genes -------------------------------------------------------------------------------------------
def rank_against_control(adata: ad.AnnData, key: str = "condition", control: str = CONTROL,
                         log_values: sp.csr_matrix | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every gene of each condition ranked against the control, as GEARS does: scanpy
    ``rank_genes_groups`` (t-test, by |score|) on log1p(1e4 x / l) (``log_values``, if computed already).

    Returns (names, adjusted p-values), each (ranked genes, conditions): column c lists the genes
    of condition c, most changed first, and their Benjamini-Hochberg adjusted p-values.
    """
    import scanpy as sc

    tmp = ad.AnnData(X=log_normalized(adata) if log_values is None else log_values, obs=pd.DataFrame({key: adata.obs[key].astype(str).to_numpy()},
                                                               index=adata.obs_names), var=adata.var[[]])
    tmp.uns["log1p"] = {"base": None}
    groups = sorted(set(tmp.obs[key]) - {control})
    sc.tl.rank_genes_groups(tmp, key, groups=groups, reference=control, method="t-test", rankby_abs=True)
    result = tmp.uns["rank_genes_groups"]
    return pd.DataFrame(result["names"]), pd.DataFrame(result["pvals_adj"])


def de_genes(adata: ad.AnnData, n_genes: int = 20, key: str = "condition", control: str = CONTROL,
             ranking: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> dict[str, np.ndarray]:
    """Top ``n_genes`` DE genes of each condition against the control: condition -> gene indices.

    ranking: the output of :func:`rank_against_control` when it is already computed; genes of the
    ranking that ``adata`` lacks are skipped, so a ranking over more genes serves a gene subset.
    """
    names, _ = ranking if ranking is not None else rank_against_control(adata, key, control)
    index = pd.Index(adata.var_names.astype(str))
    out = {}
    for condition in names.columns:
        rows = index.get_indexer(names[condition].astype(str))
        out[condition] = rows[rows >= 0][:n_genes]
    return out


# -- the benchmark's view of a screen ------------------------------------------------------------------
@dataclass
class PerturbationData:
    """A screen ready for the benchmark.

    adata: counts (cells, genes), obs ``condition`` and ``library_size``.
    pseudobulk: (conditions, genes) observed mean log-normalized expression, all cells.
    de: condition -> top-``n_de`` DE gene indices; top_genes: the ``n_top`` most expressed in control.
    ranking: every gene of each condition ranked against the control (:func:`rank_against_control`).
    synergy: double -> True/False where its interaction is known (simulator truth or paper labels).
    expected, expected_variance: (conditions, genes), a simulator's true expected pseudobulk and the
    Monte-Carlo variance of that estimate (:func:`~genailab_core.data.simulate_screen.expected_pseudobulk`);
    None on real data.
    """

    name: str
    adata: ad.AnnData
    pseudobulk: pd.DataFrame
    de: dict[str, np.ndarray]
    top_genes: np.ndarray
    synergy: pd.Series = field(default_factory=lambda: pd.Series(dtype=bool))
    vocabulary: TargetVocabulary | None = None
    ranking: tuple[pd.DataFrame, pd.DataFrame] | None = None
    n_de: int = 20
    n_top: int = 1000
    expected: pd.DataFrame | None = None
    expected_variance: pd.DataFrame | None = None

    @property
    def control(self) -> np.ndarray:
        return self.pseudobulk.loc[CONTROL].to_numpy()

    def additive_truth(self, label: str) -> np.ndarray | None:
        """ctrl + sum of the observed singles' changes, None unless every single of ``label`` was measured."""
        genes = targets_of(label)
        if not all(g in self.pseudobulk.index for g in genes):
            return None
        return self.control + sum(self.pseudobulk.loc[g].to_numpy() - self.control for g in genes)

    def restrict(self, genes: Sequence[str]) -> PerturbationData:
        """The same screen on ``genes`` only. A gene's pseudobulk and DE test do not depend on the
        other genes (library sizes come from obs), so nothing is recomputed but the selections."""
        genes = pd.Index(genes).astype(str)
        adata = self.adata[:, genes].copy()
        bulk = self.pseudobulk[genes]
        subset = lambda table: None if table is None else table[genes]  # noqa: E731
        return replace(self, adata=adata, pseudobulk=bulk, expected=subset(self.expected),
                       expected_variance=subset(self.expected_variance),
                       de=de_genes(adata, self.n_de, ranking=self.ranking),
                       top_genes=top_expressed_genes(bulk.loc[CONTROL].to_numpy(), self.n_top))


def prepare_perturbation_data(adata: ad.AnnData, name: str, n_de: int = 20, n_top: int = 1000,
                              synergy: Mapping[str, bool] | pd.Series | None = None,
                              expected: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> PerturbationData:
    """Pseudobulk, DE genes and top-expressed genes of a screen (obs ``condition`` with a "control").

    expected: (expected pseudobulk, its Monte-Carlo variance) of a simulator, which makes the noise
    floor of the benchmark the score of the true expected profile (None: real data, split halves).
    """
    if CONTROL not in set(adata.obs["condition"].astype(str)):
        raise ValueError(f"{name}: obs['condition'] has no {CONTROL!r} cells; the benchmark needs controls.")
    log_values = log_normalized(adata)                                         # once, for both uses below
    bulk = pseudobulk(adata, log_values=log_values)
    labels = pd.Series(synergy if synergy is not None else {}, dtype=bool)
    labels = labels[labels.index.isin(bulk.index)]
    ranking = rank_against_control(adata, log_values=log_values)
    return PerturbationData(name=name, adata=adata, pseudobulk=bulk, de=de_genes(adata, n_de, ranking=ranking),
                            top_genes=top_expressed_genes(bulk.loc[CONTROL].to_numpy(), n_top), synergy=labels,
                            vocabulary=TargetVocabulary.from_labels(bulk.index), ranking=ranking, n_de=n_de,
                            n_top=n_top, expected=None if expected is None else expected[0].loc[bulk.index],
                            expected_variance=None if expected is None else expected[1].loc[bulk.index])
