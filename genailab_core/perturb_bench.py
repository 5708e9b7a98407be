"""The Perturb-seq benchmark: every method on every split and seed, scored the same way.

    data = prepare_perturbation_data(adata, "norman2019_subset", synergy=labels)
    results = benchmark([data], {"gears": split_gears}, default_methods(), seeds=range(5))
    table = summarize(results)                      # mean +/- s.e. over seeds

A method is a factory ``make(data, seed) -> predictor`` with ``fit(pseudobulk, adata)`` and
``predict(labels)`` (:mod:`genailab_core.models.perturbation_baselines`,
:mod:`genailab_core.models.perturbation_cvae`); the data come from
:mod:`genailab_core.data.perturbation_data`. Each metric's name says the genes it is computed on:
``top1000ctrl`` = the 1,000 genes most expressed in control (all genes when fewer; Ahlmann-Eltze et
al.'s set), ``top20de`` = the condition's top 20 DE genes against the control (GEARS' set).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import metrics as M
from .data.labels import CONTROL, targets_of
from .data.perturbation_data import PerturbationData, hvg_genes, log_normalized
from .data.splits import PerturbationSplit
from .models.perturbation_baselines import Additive, LinearPCA, NoChange, TrainingMean
from .models.perturbation_cvae import CVAEPredictor

# the per-perturbation metrics, named for their gene sets
L2 = "l2_top1000ctrl"
PEARSON_DELTA = "pearson_delta_top1000ctrl"
PEARSON_DELTA_DE = "pearson_delta_top20de"
MSE_DE = "mse_top20de_vs_nochange"
DIRECTION_DE = "direction_top20de"
DISCRIMINATION = "discrimination_rank_top1000ctrl"            # among the test perturbations of the same group
DISCRIMINATION_POOLED = "discrimination_rank_top1000ctrl_pooled"   # among all test perturbations of the split
METRICS = [L2, PEARSON_DELTA, PEARSON_DELTA_DE, MSE_DE, DIRECTION_DE, DISCRIMINATION]
NOISE_FLOOR = "noise floor"     # the "method" whose rows score a perfect predictor (:func:`noise_floor`)
# synergy detection over the test doubles with a known interaction, and how many there were
SYNERGY_AUPRC, SYNERGY_AUROC = "synergy_auprc", "synergy_auroc"
SYNERGY_N, SYNERGY_POSITIVES = "synergy_n_labelled", "synergy_n_positive"


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
    """One row per test perturbation: its group and every per-perturbation metric.

    The discrimination rank ranks a perturbation among the test perturbations of its own group
    (``DISCRIMINATION``) and, for comparison, among all of them (``DISCRIMINATION_POOLED``).
    """
    ctrl, rows = data.control, []
    truth = data.pseudobulk.loc[predictions.index]
    groups = np.array([split.groups.get(label, "test") for label in predictions.index])
    args = (predictions.to_numpy(), truth.to_numpy())
    ranks = M.discrimination_rank(*args, genes=data.top_genes, groups=groups)
    pooled = M.discrimination_rank(*args, genes=data.top_genes)
    for i, label in enumerate(predictions.index):
        pred, true, de = predictions.loc[label].to_numpy(), truth.loc[label].to_numpy(), data.de[label]
        additive = data.additive_truth(label) if len(targets_of(label)) == 2 else None
        rows.append({
            "perturbation": label, "group": groups[i],
            L2: M.l2_distance(pred, true, data.top_genes),
            PEARSON_DELTA: M.pearson_delta(pred, true, ctrl, data.top_genes),
            PEARSON_DELTA_DE: M.pearson_delta(pred, true, ctrl, de),
            MSE_DE: M.mse_normalized(pred, true, ctrl, de),
            DIRECTION_DE: M.direction_accuracy(pred, true, ctrl, de),
            DISCRIMINATION: ranks[i], DISCRIMINATION_POOLED: pooled[i],
            "synergy score": np.nan if additive is None else M.synergy_score(pred, additive, ctrl),
        })
    return pd.DataFrame(rows)


def _synergy_rows(data: PerturbationData, scored: pd.DataFrame) -> list[dict]:
    """AUPRC/AUROC of the predicted synergy scores over the test doubles with a known interaction
    (and both singles measured), with the number of such doubles and of synergistic ones among them."""
    known = scored[scored["perturbation"].isin(data.synergy.index) & scored["synergy score"].notna()]
    labels = data.synergy.loc[known["perturbation"]].to_numpy()
    result = M.synergy_detection(known["synergy score"].to_numpy(), labels)
    values = {SYNERGY_AUPRC: result["auprc"], SYNERGY_AUROC: result["auroc"],
              SYNERGY_N: float(len(known)), SYNERGY_POSITIVES: float(labels.sum())}
    return [{"group": "doubles with known interaction", "metric": k, "value": v, "n_perturbations": len(known)}
            for k, v in values.items()]


GeneSelection = Callable[[PerturbationData, np.ndarray], Sequence[str]]


def training_hvgs(n_genes: int, transductive: bool = False) -> GeneSelection:
    """A ``genes`` argument of :func:`benchmark`: per split, the ``n_genes`` HVGs (plus measured targets)
    of the training cells (control + training perturbations); ``transductive=True`` selects on all
    cells, test perturbations included, to measure what that selection is worth."""
    def select(data: PerturbationData, train_cells: np.ndarray) -> Sequence[str]:
        return hvg_genes(data.adata, n_genes, cells=None if transductive else train_cells)
    return select


def split_half_l2(data: PerturbationData, labels: Sequence[str], seed: int) -> pd.DataFrame:
    """Each perturbation's cells split at random into halves (sizes n1, n2): the L2 over ``data.top_genes``
    between the halves' pseudobulks, and the noise floor it implies for an n-cell pseudobulk.

    Per gene with cell variance s^2 the halves differ by variance s^2 (1/n1 + 1/n2) and a perfect
    prediction (the expected profile) differs from the n-cell pseudobulk by s^2 / n, so the floor is
    ``l2_halves * sqrt(n1 n2) / n`` (half of it when n1 = n2). Returns columns perturbation, n_cells,
    l2_halves, floor; one row per label (needs >= 2 cells each).
    """
    conditions = data.adata.obs["condition"].astype(str).to_numpy()
    cells = np.flatnonzero(np.isin(conditions, list(labels)))
    values = log_normalized(data.adata[cells])[:, data.top_genes].toarray()      # (cells, top genes)
    rng, rows = np.random.default_rng(seed), []
    for label in labels:
        own = values[conditions[cells] == label]
        n = len(own)
        if n < 2:
            raise ValueError(f"{label!r} has {n} cell(s); a split-half floor needs at least 2.")
        half = rng.permutation(n) < n // 2
        l2 = float(np.linalg.norm(own[half].mean(0) - own[~half].mean(0)))
        rows.append({"perturbation": label, "n_cells": n, "l2_halves": l2,
                     "floor": l2 * np.sqrt(half.sum() * (~half).sum()) / n})
    return pd.DataFrame(rows)


def noise_floor(data: PerturbationData, split: PerturbationSplit, seed: int) -> pd.DataFrame:
    """What a perfect predictor scores on the split's test perturbations, one row per perturbation.

    With ``data.expected`` (a simulator's true expected pseudobulk): that profile scored like any
    prediction (every metric), its L2 corrected for the Monte-Carlo error of the expectation
    (``data.expected_variance``). Otherwise (real data): the L2 column only, from
    :func:`split_half_l2` (halves drawn with ``seed``).
    """
    test = list(split.test)
    if data.expected is None:
        halves = split_half_l2(data, test, seed)
        return pd.DataFrame({"perturbation": test, "group": [split.groups.get(p, "test") for p in test],
                             L2: halves["floor"].to_numpy()})
    scored = score_predictions(data, data.expected.loc[test], split)
    if data.expected_variance is not None:
        mc = data.expected_variance.loc[test].to_numpy()[:, data.top_genes].sum(1)
        scored[L2] = np.sqrt(np.maximum(scored[L2].to_numpy() ** 2 - mc, 0.0))
    return scored


def _long_rows(data: PerturbationData, scored: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """A scored table (one row per perturbation) as long rows, with the synergy and time rows."""
    long = scored.melt(id_vars=["perturbation", "group"], var_name="metric", value_name="value")
    long = long[long["metric"] != "synergy score"].assign(n_perturbations=1)
    synergy = _synergy_rows(data, scored) if "synergy score" in scored else []
    extra = pd.DataFrame(synergy + [{"group": "all", "metric": "seconds", "value": seconds,
                                     "n_perturbations": len(scored)}])
    return pd.concat([long, extra], ignore_index=True)


def run_split(data: PerturbationData, split: PerturbationSplit, methods: Mapping[str, Callable], seed: int,
              split_name: str, genes: GeneSelection | None = None, floor: bool = True) -> pd.DataFrame:
    """Fit every method on the training perturbations, score the test ones: a long table.

    genes: ``select(data, train_cells) -> gene names``, chosen per split (None: every gene of ``data``).
    floor: add the rows of :func:`noise_floor` as method ``NOISE_FLOOR``.
    """
    split.check_no_leak()
    cells = split.cell_split(data.adata.obs["condition"].astype(str))
    if genes is not None:
        data = data.restrict(genes(data, cells.train))
    train_cells = data.adata[cells.train]
    train_bulk = data.pseudobulk.loc[[CONTROL, *split.train]]                    # only training perturbations
    out = []
    for method, make in methods.items():
        tic = time.perf_counter()
        predictor = make(data, seed).fit(train_bulk, train_cells)
        scored = score_predictions(data, predictor.predict(list(split.test)), split)
        out.append(_long_rows(data, scored, time.perf_counter() - tic).assign(method=method))
    if floor:
        tic = time.perf_counter()
        scored = noise_floor(data, split, seed)
        out.append(_long_rows(data, scored, time.perf_counter() - tic).assign(method=NOISE_FLOOR))
    return pd.concat(out, ignore_index=True).assign(dataset=data.name, split=split_name, seed=seed)


def benchmark(datasets: Iterable[PerturbationData], splits: Mapping[str, Callable[..., PerturbationSplit]],
              methods: Mapping[str, Callable], seeds: Iterable[int],
              only: Mapping[str, Iterable[str]] | None = None, genes: GeneSelection | None = None,
              floor: bool = True) -> pd.DataFrame:
    """Every method x split x seed on every data set, with the noise floor (``floor``): a tidy DataFrame.

    splits: name -> ``make(labels, seed=seed) -> PerturbationSplit``.
    only: data set name -> the split names to run on it (default: every split).
    genes: a gene selection made per split (e.g. :func:`training_hvgs`); None: the data's genes.
    Columns: dataset, split, seed, method, group, perturbation, metric, value, n_perturbations.
    """
    frames = []
    for data in datasets:
        labels = data.pseudobulk.index
        for split_name, make_split in splits.items():
            if only is not None and split_name not in set(only.get(data.name, splits)):
                continue
            for seed in seeds:
                frames.append(run_split(data, make_split(labels, seed=seed), methods, seed, split_name, genes, floor))
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
