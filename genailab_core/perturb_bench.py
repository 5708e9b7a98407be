"""The Perturb-seq benchmark: every method on every split and seed, scored the same way.

    data = prepare_perturbation_data(adata, "norman2019_subset", interactions=labels)
    results = benchmark([data], {"gears": split_gears}, methods, seeds=range(5))
    table = summarize(results)                      # mean +/- s.e. over seeds

A method is a factory ``make(data, seed) -> predictor`` with ``fit(pseudobulk, adata)`` and
``predict(labels)`` (see :mod:`genailab_core.models.perturbation`). Metrics are those of the
"Perturbation metrics" section of :mod:`genailab_core.metrics`; DE genes come from scanpy's
``rank_genes_groups`` against the control on all cells (GEARS' protocol).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd

from . import metrics as M
from .data.simulate import INTERACTION_TYPES, InteractionMix
from .data.labels import CONTROL, targets_of
from .data.splits import PerturbationSplit
from .models.perturbation import (
    Additive,
    CVAEPredictor,
    LinearPCA,
    NoChange,
    TargetVocabulary,
    TrainingMean,
    log_normalized,
    pseudobulk,
)

# Norman et al. 2019's eight GI types (GEARS' labels) -> the simulator's five.
NORMAN_GI_TO_SIMULATOR = {
    "ADDITIVE": "additive",
    "SYNERGY_SIMILAR_PHENO": "synergy", "SYNERGY_DISSIMILAR_PHENO": "synergy", "POTENTIATION": "synergy",
    "SUPPRESSOR": "suppression", "REDUNDANT": "suppression",
    "EPISTASIS": "epistasis", "NEOMORPHIC": "neomorphic",
}
SYNERGY_TYPES = ("SYNERGY_SIMILAR_PHENO", "SYNERGY_DISSIMILAR_PHENO", "POTENTIATION", "synergy")

# Published on the FULL Norman data (Ahlmann-Eltze et al. 2025, Fig. 1; held-out doubles).
PUBLISHED_NORMAN_DOUBLES = pd.DataFrame(
    {"L2 (top 1,000 genes)": [2.77, 3.92, 4.70, np.nan], "Pearson delta": [0.89, 0.63, 0.52, np.nan],
     "synergy AUPRC": [np.nan, np.nan, np.nan, 0.33]},
    index=pd.Index(["additive", "GEARS", "scGPT", "no change"], name="method (published, full Norman data)"))


def interaction_mix_from_labels(gi_types: Iterable[str]) -> InteractionMix:
    """The simulator's :class:`InteractionMix` in the proportions of Norman's GI-type labels."""
    mapped = pd.Series([NORMAN_GI_TO_SIMULATOR.get(str(t)) for t in gi_types])
    if mapped.isna().any():
        raise ValueError(f"Unknown GI types {sorted(set(np.asarray(gi_types)[mapped.isna().to_numpy()]))}; "
                         f"known: {sorted(NORMAN_GI_TO_SIMULATOR)}.")
    shares = mapped.value_counts(normalize=True)
    return InteractionMix(**{t: float(shares.get(t, 0.0)) for t in INTERACTION_TYPES})


def load_screen(name: str, max_genes: int = 5000, path=None) -> ad.AnnData:
    """A perturbation screen by name, counts in .X and obs ``condition``: "norman2019_subset",
    "norman2019" (the full matrix, cut to ``max_genes`` highly variable genes plus every
    measured target gene, as GEARS does) or "papalexi2021"."""
    from .data import load_norman, load_norman_full, load_papalexi, select_hvg

    loaders = {"norman2019_subset": load_norman, "norman2019": load_norman_full, "papalexi2021": load_papalexi}
    if name not in loaders:
        raise ValueError(f"Unknown screen {name!r}; use one of {sorted(loaders)}.")
    adata = loaders[name](path=path)
    if adata.n_vars > max_genes:
        targets = {g for label in adata.obs["condition"].astype(str).unique() for g in targets_of(label)}
        hvg = set(select_hvg(adata, n_top_genes=max_genes).var_names)
        adata = adata[:, [g in hvg or g in targets for g in adata.var_names]].copy()
    return adata


def norman_synergy_labels(gi_type_labels: pd.DataFrame) -> pd.Series:
    """double ("A+B") -> True for Norman's synergy types (synergy similar/dissimilar, potentiation)."""
    return gi_type_labels.set_index("condition")["gi_type"].isin(SYNERGY_TYPES)


def rank_against_control(adata: ad.AnnData, key: str = "condition",
                         control: str = CONTROL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every gene of each condition ranked against the control, as GEARS does: scanpy
    ``rank_genes_groups`` (t-test, by |score|) on log1p(1e4 x / l).

    Returns (names, adjusted p-values), each (ranked genes, conditions): column c lists the genes
    of condition c, most changed first, and their Benjamini-Hochberg adjusted p-values.
    """
    import scanpy as sc

    tmp = ad.AnnData(X=log_normalized(adata), obs=pd.DataFrame({key: adata.obs[key].astype(str).to_numpy()},
                                                               index=adata.obs_names), var=adata.var[[]])
    tmp.uns["log1p"] = {"base": None}
    groups = sorted(set(tmp.obs[key]) - {control})
    sc.tl.rank_genes_groups(tmp, key, groups=groups, reference=control, method="t-test", rankby_abs=True)
    result = tmp.uns["rank_genes_groups"]
    return pd.DataFrame(result["names"]), pd.DataFrame(result["pvals_adj"])


def de_genes(adata: ad.AnnData, n_genes: int = 20, key: str = "condition", control: str = CONTROL,
             ranking: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> dict[str, np.ndarray]:
    """Top ``n_genes`` DE genes of each condition against the control: condition -> gene indices.

    ranking: the output of :func:`rank_against_control` when it is already computed.
    """
    names, _ = ranking if ranking is not None else rank_against_control(adata, key, control)
    index = pd.Index(adata.var_names.astype(str))
    return {g: index.get_indexer(names[g][:n_genes].astype(str)) for g in names.columns}


@dataclass
class PerturbationData:
    """A screen ready for the benchmark.

    adata: counts (cells, genes), obs ``condition`` and ``library_size``.
    pseudobulk: (conditions, genes) observed mean log-normalized expression, all cells.
    de: condition -> top-20 DE gene indices; top_genes: the 1,000 most expressed in control.
    synergy: double -> True/False where its interaction is known (simulator truth or paper labels).
    """

    name: str
    adata: ad.AnnData
    pseudobulk: pd.DataFrame
    de: dict[str, np.ndarray]
    top_genes: np.ndarray
    synergy: pd.Series = field(default_factory=lambda: pd.Series(dtype=bool))
    vocabulary: TargetVocabulary | None = None

    @property
    def control(self) -> np.ndarray:
        return self.pseudobulk.loc[CONTROL].to_numpy()

    def additive_truth(self, label: str) -> np.ndarray | None:
        """ctrl + sum of the observed singles' changes, None unless every single of ``label`` was measured."""
        genes = targets_of(label)
        if not all(g in self.pseudobulk.index for g in genes):
            return None
        return self.control + sum(self.pseudobulk.loc[g].to_numpy() - self.control for g in genes)


def prepare_perturbation_data(adata: ad.AnnData, name: str, n_de: int = 20, n_top: int = 1000,
                              synergy: Mapping[str, bool] | pd.Series | None = None) -> PerturbationData:
    """Pseudobulk, DE genes and top-expressed genes of a screen (obs ``condition`` with a "control")."""
    if CONTROL not in set(adata.obs["condition"].astype(str)):
        raise ValueError(f"{name}: obs['condition'] has no {CONTROL!r} cells; the benchmark needs controls.")
    bulk = pseudobulk(adata)
    labels = pd.Series(synergy if synergy is not None else {}, dtype=bool)
    labels = labels[labels.index.isin(bulk.index)]
    return PerturbationData(name=name, adata=adata, pseudobulk=bulk, de=de_genes(adata, n_de),
                            top_genes=M.top_expressed_genes(bulk.loc[CONTROL].to_numpy(), n_top), synergy=labels,
                            vocabulary=TargetVocabulary.from_labels(bulk.index))


def default_methods(cvae: Mapping | None = None, device: str = "cpu") -> dict[str, Callable]:
    """The chapter's five methods as factories ``make(data, seed)``; ``cvae``: CVAEPredictor keywords."""
    cvae = dict(cvae or {})
    return {
        "no change": lambda data, seed: NoChange(),
        "training mean": lambda data, seed: TrainingMean(),
        "additive": lambda data, seed: Additive(),
        "linear (PCA ridge)": lambda data, seed: LinearPCA(),
        "CVAE-NB": lambda data, seed: CVAEPredictor(data.vocabulary, seed=seed, device=device, **cvae),
    }


def score_predictions(data: PerturbationData, predictions: pd.DataFrame, split: PerturbationSplit) -> pd.DataFrame:
    """One row per test perturbation: its group and every per-perturbation metric."""
    ctrl, rows = data.control, []
    truth = data.pseudobulk.loc[predictions.index]
    ranks = M.discrimination_rank(predictions.to_numpy(), truth.to_numpy(), genes=data.top_genes)
    for i, label in enumerate(predictions.index):
        pred, true, de = predictions.loc[label].to_numpy(), truth.loc[label].to_numpy(), data.de[label]
        additive = data.additive_truth(label) if len(targets_of(label)) == 2 else None
        rows.append({
            "perturbation": label, "group": split.groups.get(label, "test"),
            "L2 (top 1,000 genes)": M.l2_distance(pred, true, data.top_genes),
            "Pearson delta": M.pearson_delta(pred, true, ctrl),
            "Pearson delta (top-20 DE)": M.pearson_delta(pred, true, ctrl, de),
            "MSE top-20 DE / no change": M.mse_normalized(pred, true, ctrl, de),
            "direction (top-20 DE)": M.direction_accuracy(pred, true, ctrl, de),
            "discrimination rank": ranks[i],
            "synergy score": np.nan if additive is None else M.synergy_score(pred, additive, ctrl),
        })
    return pd.DataFrame(rows)


def _synergy_rows(data: PerturbationData, scored: pd.DataFrame) -> list[dict]:
    """AUPRC/AUROC of the predicted synergy scores over test doubles with a known interaction."""
    known = scored[scored["perturbation"].isin(data.synergy.index) & scored["synergy score"].notna()]
    result = M.synergy_detection(known["synergy score"].to_numpy(),
                                 data.synergy.loc[known["perturbation"]].to_numpy())
    return [{"group": "doubles with known interaction", "metric": f"synergy {k.upper()}", "value": v,
             "n_perturbations": len(known)} for k, v in result.items()]


def run_split(data: PerturbationData, split: PerturbationSplit, methods: Mapping[str, Callable], seed: int,
              split_name: str) -> pd.DataFrame:
    """Fit every method on the training perturbations, score the test ones: a long table."""
    split.check_no_leak()
    cells = split.cell_split(data.adata.obs["condition"].astype(str))
    train_cells = data.adata[cells.train]
    train_bulk = data.pseudobulk.loc[[CONTROL, *split.train]]                    # only training perturbations
    out = []
    for method, make in methods.items():
        tic = time.perf_counter()
        predictor = make(data, seed).fit(train_bulk, train_cells)
        scored = score_predictions(data, predictor.predict(list(split.test)), split)
        seconds = time.perf_counter() - tic
        long = scored.melt(id_vars=["perturbation", "group"], var_name="metric", value_name="value")
        long = long[long["metric"] != "synergy score"].assign(n_perturbations=1)
        extra = pd.DataFrame(_synergy_rows(data, scored) + [
            {"group": "all", "metric": "seconds", "value": seconds, "n_perturbations": len(scored)}])
        out.append(pd.concat([long, extra], ignore_index=True).assign(method=method))
    return pd.concat(out, ignore_index=True).assign(dataset=data.name, split=split_name, seed=seed)


def benchmark(datasets: Iterable[PerturbationData], splits: Mapping[str, Callable[..., PerturbationSplit]],
              methods: Mapping[str, Callable], seeds: Iterable[int],
              only: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """Every method x split x seed on every data set: a tidy DataFrame.

    splits: name -> ``make(labels, seed=seed) -> PerturbationSplit``.
    only: data set name -> the split names to run on it (default: every split).
    Columns: dataset, split, seed, method, group, perturbation, metric, value, n_perturbations.
    """
    frames = []
    for data in datasets:
        labels = data.pseudobulk.index
        for split_name, make_split in splits.items():
            if only is not None and split_name not in set(only.get(data.name, splits)):
                continue
            for seed in seeds:
                frames.append(run_split(data, make_split(labels, seed=seed), methods, seed, split_name))
    columns = ["dataset", "split", "seed", "method", "group", "perturbation", "metric", "value", "n_perturbations"]
    return pd.concat(frames, ignore_index=True)[columns]


def summarize(results: pd.DataFrame, groups: bool = True) -> pd.DataFrame:
    """Mean +/- standard error over seeds of the per-seed mean over test perturbations.

    groups: keep the split's groups (seen0/1/2, ...) apart; False pools every test perturbation.
    Returns columns dataset, split, group, method, metric, mean, se, n_seeds, n_perturbations
    (test perturbations per seed, averaged).
    """
    data = results if groups else results.assign(group=np.where(results["metric"].str.startswith("synergy"),
                                                                results["group"], "all test"))
    keys = ["dataset", "split", "group", "method", "metric"]
    per_seed = data.groupby(keys + ["seed"], sort=False).agg(value=("value", "mean"),
                                                               n=("n_perturbations", "sum")).reset_index()
    summary = per_seed.groupby(keys, sort=False).agg(mean=("value", "mean"), sd=("value", "std"),
                                                     n_seeds=("value", "count"), n_perturbations=("n", "mean"))
    summary["se"] = summary.pop("sd") / np.sqrt(summary["n_seeds"])
    return summary.reset_index()


def format_table(summary: pd.DataFrame, metrics: Iterable[str], digits: int = 2) -> pd.DataFrame:
    """Wide table: rows (dataset, split, group, method), one "mean +/- se" column per metric."""
    metrics = list(metrics)
    sub = summary[summary["metric"].isin(metrics)].copy()
    sub["cell"] = [("n/a" if np.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}" if not np.isnan(s) else
                    f"{m:.{digits}f}") for m, s in zip(sub["mean"], sub["se"])]
    wide = sub.pivot_table(index=["dataset", "split", "group", "method"], columns="metric", values="cell",
                           aggfunc="first", sort=False)
    return wide.reindex(columns=[m for m in metrics if m in wide.columns]).fillna("n/a")
