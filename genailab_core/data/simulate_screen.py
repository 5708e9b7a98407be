"""Perturbation-screen simulator: controls, single and double perturbations with known interactions.

Each condition shifts the log-frequencies ``eta`` of :mod:`.simulate_core`'s shared NB model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import anndata as ad
import numpy as np
import pandas as pd

from .datasets import CONTROL, perturbation_table
from .preprocess import log_normalize_counts
from .simulate_core import _gene_names, _simulated_anndata, _softmax_rows, _sparse_normal, _start, sample_negative_binomial


INTERACTION_TYPES = ("additive", "synergy", "suppression", "epistasis", "neomorphic")


@dataclass(frozen=True)
class InteractionMix:
    """Proportions of the genetic-interaction types among simulated double perturbations.

    With single effects ``e_A``, ``e_B`` (downstream part) the double's downstream effect is
    (Norman et al. 2019 name these phenotypes):
    additive ``e_A + e_B``; synergy ``f_syn (e_A + e_B)`` with f_syn > 1; suppression (buffering)
    ``f_sup (e_A + e_B)`` with f_sup < 1; epistasis ``e_A`` (the first target masks the second);
    neomorphic ``e_A + e_B + n_AB``, a new effect on genes neither single touches.
    The proportions must be >= 0 and sum to 1.
    """

    additive: float = 0.4
    synergy: float = 0.15
    suppression: float = 0.15
    epistasis: float = 0.15
    neomorphic: float = 0.15

    def __post_init__(self) -> None:
        values = np.array(list(asdict(self).values()))
        if (values < 0).any() or not np.isclose(values.sum(), 1.0):
            raise ValueError(f"Interaction proportions must be >= 0 and sum to 1, got {asdict(self)}.")

    def counts(self, n_double: int) -> dict[str, int]:
        """Number of doubles of each type: proportions x n_double, rounded by largest remainder."""
        exact = np.array(list(asdict(self).values())) * n_double
        counts = np.floor(exact).astype(int)
        remainder_order = np.argsort(-(exact - counts), kind="stable")
        counts[remainder_order[: n_double - counts.sum()]] += 1
        return dict(zip(INTERACTION_TYPES, counts.tolist()))


def _double_downstream(
    rng: np.random.Generator, kind: str, first: np.ndarray, second: np.ndarray, untouched: np.ndarray,
    synergy_factor: float, suppression_factor: float, effect_fraction: float, neomorphic_sd: float,
) -> np.ndarray:
    """Downstream effect (genes,) of a double from its singles' downstream effects, by interaction type.

    untouched: (genes,) bool, genes neither single affects (on-target or downstream); the only
    genes a neomorphic effect may hit.
    """
    if kind == "additive":
        return first + second
    if kind == "synergy":
        return synergy_factor * (first + second)
    if kind == "suppression":
        return suppression_factor * (first + second)
    if kind == "epistasis":
        return first.copy()
    novel = untouched * _sparse_normal(rng, first.shape, effect_fraction, neomorphic_sd)
    return first + second + novel


def _double_effects(
    rng: np.random.Generator,
    pairs: list[tuple[int, int]],
    kinds: np.ndarray,
    on_target: np.ndarray,
    downstream: np.ndarray,
    *strengths: float,
) -> np.ndarray:
    """Effects (doubles, genes) of the pairs (i, j) of singles: both on-target shifts plus the
    downstream effect of each pair's interaction kind (strengths as in :func:`_double_downstream`)."""
    double_effects = np.zeros((len(pairs), on_target.shape[1]))
    for row, ((i, j), kind) in enumerate(zip(pairs, kinds)):
        untouched = (on_target[i] + downstream[i] == 0) & (on_target[j] + downstream[j] == 0)
        novel = _double_downstream(rng, kind, downstream[i], downstream[j], untouched, *strengths)
        double_effects[row] = on_target[i] + on_target[j] + novel
    return double_effects


def _condition_obs(names: list[str], condition_index: np.ndarray) -> dict:
    """Per-cell labels of a screen: names (conditions,) with the control first, condition_index (cells,)."""
    labels = pd.Series(np.asarray(names, dtype=object)[condition_index])
    parsed = perturbation_table(labels)
    return {
        "perturbation": pd.Categorical(labels, categories=names),
        "condition": pd.Categorical(labels, categories=names),
        "target_1": pd.Categorical(parsed["target_1"]),
        "target_2": pd.Categorical(parsed["target_2"]),
        "n_targets": parsed["n_targets"].to_numpy(),
        "is_control": parsed["is_control"].to_numpy(),
    }


def simulate_perturbations(
    n_genes: int = 500, n_single: int = 20, n_double: int = 30, interactions: InteractionMix = InteractionMix(),
    cells_per_condition: int = 100, n_control: int = 500, effect_sd: float = 1.0, effect_fraction: float = 0.05,
    on_target_effect: float = 2.0, synergy_factor: float = 2.0, suppression_factor: float = 0.3,
    neomorphic_sd: float = 1.0, dispersion: float | np.ndarray = 5.0, library_log_mean: float = 8.0,
    library_log_sd: float = 0.3, baseline_sd: float = 1.5, seed: int = 0, store_means: bool = False,
) -> ad.AnnData:
    """A Perturb-seq-like screen: controls, single and double perturbations with known interactions.

    Each of ``n_single`` target genes (drawn among the simulated genes; perturbation names are
    gene names) has an effect on log-frequencies ``e_A = o_A + d_A``: an on-target shift
    ``on_target_effect`` of its own gene (CRISPRa-like; negative for knock-down) and downstream
    effects ``d_A ~ N(0, effect_sd)`` on a random ``effect_fraction`` of genes. ``n_double``
    distinct pairs of singles are drawn; each gets an interaction type in the proportions of
    ``interactions`` (exact counts, see :class:`InteractionMix`), which sets its downstream
    effect from ``d_A``, ``d_B``; the on-target shifts always add: ``e_AB = o_A + o_B + d_AB``.
    Cells of a condition have ``eta = a + e`` (controls ``eta = a``), then NB counts as in the
    module docstring.

    synergy_factor (> 1), suppression_factor (< 1), neomorphic_sd: strengths of those types.
    cells_per_condition: cells of each single and double; n_control: control cells.
    dispersion, library_log_mean, library_log_sd, baseline_sd, seed, store_means: as in
    :func:`simulate_counts`.

    Returns AnnData with obs ``perturbation`` and ``condition`` ("control", "A", "A+B"),
    ``target_1``, ``target_2``, ``n_targets``, ``is_control``, ``size_factor``, ``library_size``;
    uns["ground_truth"]: ``gene_baseline`` (G,), ``single_effects`` (DataFrame singles x genes),
    ``double_effects`` (DataFrame doubles x genes), ``interactions`` (DataFrame per double:
    ``target_1``, ``target_2``, ``interaction_type``), ``dispersion`` (G,), ``library_log_mean``,
    ``library_log_sd`` (what :func:`expected_pseudobulk` needs to draw fresh cells).
    """
    n_pairs = n_single * (n_single - 1) // 2
    if n_single > n_genes or n_double > n_pairs:
        raise ValueError(
            f"n_single={n_single} targets allow at most {n_pairs} distinct doubles and need n_genes >= n_single; "
            f"got n_double={n_double}, n_genes={n_genes}. Raise n_single or lower n_double."
        )
    genes = _gene_names(n_genes)
    rng, theta, baseline = _start(seed, dispersion, n_genes, baseline_sd)
    targets = np.sort(rng.choice(n_genes, size=n_single, replace=False))
    on_target = np.zeros((n_single, n_genes))
    on_target[np.arange(n_single), targets] = on_target_effect
    downstream = _sparse_normal(rng, (n_single, n_genes), effect_fraction, effect_sd)
    downstream[np.arange(n_single), targets] = 0.0
    all_pairs = list(combinations(range(n_single), 2))
    pairs = [all_pairs[i] for i in np.sort(rng.choice(n_pairs, size=n_double, replace=False))]
    kinds = rng.permutation(np.repeat(INTERACTION_TYPES, list(interactions.counts(n_double).values())))
    strengths = (synergy_factor, suppression_factor, effect_fraction, neomorphic_sd)
    double_effects = _double_effects(rng, pairs, kinds, on_target, downstream, *strengths)
    single_names = list(genes[targets])
    double_names = [f"{single_names[i]}+{single_names[j]}" for i, j in pairs]
    effects = np.vstack([np.zeros((1, n_genes)), on_target + downstream, double_effects])  # (conditions, genes)
    sizes = [n_control] + [cells_per_condition] * (n_single + n_double)
    condition_index = np.repeat(np.arange(len(sizes)), sizes)
    eta = (baseline + effects).astype(np.float32)[condition_index]  # (cells, genes)
    obs = _condition_obs([CONTROL] + single_names + double_names, condition_index)
    interactions_table = pd.DataFrame({"target_1": [single_names[i] for i, _ in pairs],
                                       "target_2": [single_names[j] for _, j in pairs],
                                       "interaction_type": [str(kind) for kind in kinds]}, index=double_names)
    truth = {"gene_baseline": baseline,
             "single_effects": pd.DataFrame(on_target + downstream, index=single_names, columns=genes),
             "double_effects": pd.DataFrame(double_effects, index=double_names, columns=genes),
             "interactions": interactions_table, "dispersion": theta,
             "library_log_mean": library_log_mean, "library_log_sd": library_log_sd}
    library = (library_log_mean, library_log_sd)
    return _simulated_anndata(rng, eta, theta, library, store_means, obs, genes, truth, "simulated_perturbations")


def true_log_frequencies(adata: ad.AnnData) -> pd.DataFrame:
    """The simulator's ``eta`` of every condition: (conditions, genes), control first, then singles, doubles."""
    truth = adata.uns["ground_truth"]
    effects = pd.concat([truth["single_effects"], truth["double_effects"]])
    control = pd.DataFrame(np.zeros((1, effects.shape[1])), index=[CONTROL], columns=effects.columns)
    return pd.concat([control, effects]) + np.asarray(truth["gene_baseline"])[None, :]


def expected_pseudobulk(adata: ad.AnnData, n_cells: int = 1000, seed: int = 0,
                        target_sum: float = 1e4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monte-Carlo expectation of each condition's pseudobulk, from the simulator's known parameters.

    The pseudobulk is a mean of ``log1p(target_sum x / l)`` (l = the cell's observed total), whose
    expectation is not the log of the expected counts, so we draw ``n_cells`` fresh cells per
    condition from the same eta, dispersion and library-size law, with the simulator's own NB sampler
    and the package's log-normalization, and average them.
    Returns (expected, mc_variance), each (conditions, genes): the average over the fresh cells and
    its own Monte-Carlo variance (per-gene variance over cells / n_cells), for correcting distances.
    """
    truth = adata.uns["ground_truth"]
    eta = true_log_frequencies(adata)
    theta = np.asarray(truth["dispersion"], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means, variances = [], []
    for row in eta.to_numpy():
        library = rng.lognormal(truth["library_log_mean"], truth["library_log_sd"], size=(n_cells, 1))
        mu = library * _softmax_rows(row[None, :].copy())                                # (n_cells, genes)
        values = log_normalize_counts(sample_negative_binomial(rng, mu, theta), target_sum=target_sum)  # (cells, genes)
        means.append(values.mean(0))
        variances.append(values.var(0, ddof=1) / n_cells)
    frame = lambda rows: pd.DataFrame(np.vstack(rows), index=eta.index, columns=adata.var_names)  # noqa: E731
    return frame(means), frame(variances)
