"""Negative-binomial count simulators with known ground truth.

All three simulators share one generative model, the one scVI assumes (Lopez et al. 2018):
a cell ``c`` with library size ``l_c`` expresses gene ``g`` with frequency
``rho_cg = softmax_g(eta_cg)`` and its count is

    x_cg ~ NB(mean = l_c * rho_cg, inverse dispersion = theta_g),
    E[x_cg] = mu_cg,   Var[x_cg] = mu_cg + mu_cg^2 / theta_g,

sampled as the Gamma-Poisson mixture ``lambda ~ Gamma(theta, mu / theta)``,
``x ~ Poisson(lambda)``. ``l_c ~ LogNormal(library_log_mean, library_log_sd)``. The simulators
differ only in the log-frequencies ``eta``: cell types, batches and continuous programs
(:func:`simulate_counts`); perturbation effects with genetic interactions
(:func:`simulate_perturbations`); branching trajectories (:func:`simulate_trajectory`).
The truth (effects, loadings, types of interaction) is returned in ``uns["ground_truth"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets import CONTROL, perturbation_table
from .preprocess import row_sums


def sample_negative_binomial(rng: np.random.Generator, mu: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """Draw NB counts with mean ``mu`` and inverse dispersion ``theta`` (Gamma-Poisson mixture).

    mu: (cells, genes) means > 0, float32 or float64 (the Gamma draws use the same precision);
    theta: scalar or (genes,) > 0. Returns int64 counts, same shape as mu.
    """
    dtype = np.float32 if mu.dtype == np.float32 else np.float64
    theta = np.asarray(theta, dtype=dtype)
    shape = theta if theta.ndim == 0 else np.broadcast_to(theta, mu.shape)
    rate = rng.standard_gamma(shape, size=mu.shape, dtype=dtype)  # Gamma(theta, 1)
    rate *= mu / theta  # Gamma(theta, scale = mu / theta): mean mu, variance mu^2 / theta
    return rng.poisson(rate)


def _softmax_rows(eta: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in place: eta (cells, genes) becomes frequencies summing to 1 per cell."""
    shifted = eta
    shifted -= eta.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _log_softmax(eta: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of eta: (..., genes)."""
    shifted = eta - eta.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sparse_normal(rng: np.random.Generator, shape: tuple[int, ...], fraction: float, sd: float) -> np.ndarray:
    """Effects that are N(0, sd) on a random ``fraction`` of entries and 0 elsewhere."""
    return (rng.random(shape) < fraction) * rng.normal(0.0, sd, size=shape)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not np.all(np.asarray(value) > 0):
            raise ValueError(f"{name} must be > 0, got {value}.")


def _gene_dispersion(dispersion: float | np.ndarray, n_genes: int) -> np.ndarray:
    theta = np.broadcast_to(np.asarray(dispersion, dtype=np.float64), (n_genes,)).copy()
    _check_positive(dispersion=theta)
    return theta


def _sample_cells(
    rng: np.random.Generator,
    eta: np.ndarray,
    theta: np.ndarray,
    library_log_mean: float,
    library_log_sd: float,
    store_means: bool,
) -> tuple[sp.csr_matrix, np.ndarray, dict[str, np.ndarray]]:
    """Library sizes, means and NB counts for log-frequencies eta: (cells, genes), float32.

    eta is overwritten (it becomes mu) to keep one (cells, genes) array in memory.
    """
    size_factor = rng.lognormal(library_log_mean, library_log_sd, size=eta.shape[0])
    mu = _softmax_rows(eta)
    mu *= size_factor[:, None].astype(eta.dtype)  # (cells, genes) NB means
    counts = sp.csr_matrix(sample_negative_binomial(rng, mu, theta)).astype(np.float32)
    layers = {"mu": mu.astype(np.float32)} if store_means else {}
    return counts, size_factor, layers


def _labels(prefix: str, codes: np.ndarray, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}_{i}" for i in range(n)])


def _gene_names(n_genes: int) -> pd.Index:
    width = len(str(n_genes - 1))
    return pd.Index([f"gene_{i:0{width}d}" for i in range(n_genes)])


def simulate_counts(
    n_cells: int = 2000,
    n_genes: int = 1000,
    n_cell_types: int = 5,
    n_batches: int = 2,
    n_programs: int = 3,
    dispersion: float | np.ndarray = 5.0,
    library_log_mean: float = 8.0,
    library_log_sd: float = 0.3,
    baseline_sd: float = 1.5,
    type_effect_sd: float = 1.0,
    type_marker_fraction: float = 0.1,
    batch_effect_sd: float = 0.2,
    program_effect_sd: float = 0.5,
    program_gene_fraction: float = 0.2,
    seed: int = 0,
    store_means: bool = False,
) -> ad.AnnData:
    """Single-cell counts from discrete cell types, batches and continuous programs.

    Log-frequency of gene g in cell c (then softmax over genes, see the module docstring):

        eta_cg = a_g + delta[type_c, g] + beta[batch_c, g] + sum_k s_ck W_kg

    n_cells, n_genes: size of the matrix.
    n_cell_types: number of types; each cell's type is uniform at random.
    n_batches: number of batches; uniform at random, independent of type.
    n_programs: continuous latent programs; scores ``s_ck ~ N(0, 1)`` per cell.
    dispersion: NB inverse dispersion theta, scalar or (genes,); Var = mu + mu^2 / theta
        (large theta -> Poisson).
    library_log_mean, library_log_sd: library size ``l_c ~ LogNormal(mean, sd)`` (natural log);
        the default exp(8) ~ 3,000 UMIs per cell.
    baseline_sd: gene baseline log-frequencies ``a_g ~ N(0, baseline_sd)`` (spread of abundances).
    type_effect_sd, type_marker_fraction: type effects ``delta_tg ~ N(0, sd)`` on a random
        fraction of genes (markers), 0 elsewhere.
    batch_effect_sd: batch effects ``beta_bg ~ N(0, sd)`` on every gene.
    program_effect_sd, program_gene_fraction: loadings ``W_kg ~ N(0, sd)`` on a random fraction
        of genes, 0 elsewhere.
    seed: seed of the numpy Generator; same seed, same data.
    store_means: also return the NB means ``mu`` as ``layers["mu"]`` (float32).

    Returns AnnData: X (cells, genes) CSR float32 counts; obs ``cell_type``, ``batch``,
    ``program_0..K-1`` (scores), ``size_factor`` (l_c), ``library_size`` (observed total);
    uns["ground_truth"]: ``gene_baseline`` (G,), ``type_effects`` (T, G), ``type_log_profiles``
    (T, G; log softmax(a + delta_t), the expected log-frequency of a type without batch or
    program effects), ``batch_effects`` (B, G), ``program_loadings`` (K, G), ``dispersion`` (G,).
    """
    _check_positive(n_cells=n_cells, n_genes=n_genes, n_cell_types=n_cell_types, n_batches=n_batches)
    rng = np.random.default_rng(seed)
    theta = _gene_dispersion(dispersion, n_genes)
    baseline = rng.normal(0.0, baseline_sd, size=n_genes)
    type_effects = _sparse_normal(rng, (n_cell_types, n_genes), type_marker_fraction, type_effect_sd)
    batch_effects = rng.normal(0.0, batch_effect_sd, size=(n_batches, n_genes))
    loadings = _sparse_normal(rng, (n_programs, n_genes), program_gene_fraction, program_effect_sd)
    cell_type = rng.integers(n_cell_types, size=n_cells)
    batch = rng.integers(n_batches, size=n_cells)
    scores = rng.normal(size=(n_cells, n_programs))
    # (types, batches, genes) table of a + delta_t + beta_b, then one gather per cell, in float32
    type_batch = (baseline + type_effects[:, None, :] + batch_effects[None, :, :]).astype(np.float32)
    eta = type_batch[cell_type, batch]  # (cells, genes)
    eta += scores.astype(np.float32) @ loadings.astype(np.float32)
    counts, size_factor, layers = _sample_cells(rng, eta, theta, library_log_mean, library_log_sd, store_means)
    obs = pd.DataFrame(
        {"cell_type": _labels("type", cell_type, n_cell_types), "batch": _labels("batch", batch, n_batches)},
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    for k in range(n_programs):
        obs[f"program_{k}"] = scores[:, k]
    obs["size_factor"] = size_factor
    obs["library_size"] = row_sums(counts)
    truth = {
        "gene_baseline": baseline,
        "type_effects": type_effects,
        "type_log_profiles": _log_softmax(baseline + type_effects),
        "batch_effects": batch_effects,
        "program_loadings": loadings,
        "dispersion": theta,
        "library_log_mean": library_log_mean,
        "library_log_sd": library_log_sd,
    }
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=_gene_names(n_genes)), layers=layers)
    adata.uns["ground_truth"] = truth
    adata.uns["dataset"] = "simulated_counts"
    return adata


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
    rng: np.random.Generator,
    kind: str,
    first: np.ndarray,
    second: np.ndarray,
    untouched: np.ndarray,
    synergy_factor: float,
    suppression_factor: float,
    effect_fraction: float,
    neomorphic_sd: float,
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


def simulate_perturbations(
    n_genes: int = 500,
    n_single: int = 20,
    n_double: int = 30,
    interactions: InteractionMix = InteractionMix(),
    cells_per_condition: int = 100,
    n_control: int = 500,
    effect_sd: float = 1.0,
    effect_fraction: float = 0.05,
    on_target_effect: float = 2.0,
    synergy_factor: float = 2.0,
    suppression_factor: float = 0.3,
    neomorphic_sd: float = 1.0,
    dispersion: float | np.ndarray = 5.0,
    library_log_mean: float = 8.0,
    library_log_sd: float = 0.3,
    baseline_sd: float = 1.5,
    seed: int = 0,
    store_means: bool = False,
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
    ``target_1``, ``target_2``, ``interaction_type``), ``dispersion`` (G,).
    """
    n_pairs = n_single * (n_single - 1) // 2
    if n_single > n_genes or n_double > n_pairs:
        raise ValueError(
            f"n_single={n_single} targets allow at most {n_pairs} distinct doubles and need n_genes >= n_single; "
            f"got n_double={n_double}, n_genes={n_genes}. Raise n_single or lower n_double."
        )
    rng = np.random.default_rng(seed)
    genes = _gene_names(n_genes)
    theta = _gene_dispersion(dispersion, n_genes)
    baseline = rng.normal(0.0, baseline_sd, size=n_genes)
    targets = np.sort(rng.choice(n_genes, size=n_single, replace=False))
    on_target = np.zeros((n_single, n_genes))
    on_target[np.arange(n_single), targets] = on_target_effect
    downstream = _sparse_normal(rng, (n_single, n_genes), effect_fraction, effect_sd)
    downstream[np.arange(n_single), targets] = 0.0
    all_pairs = list(combinations(range(n_single), 2))
    pairs = [all_pairs[i] for i in np.sort(rng.choice(n_pairs, size=n_double, replace=False))]
    kinds = rng.permutation(np.repeat(INTERACTION_TYPES, list(interactions.counts(n_double).values())))
    double_effects = np.zeros((n_double, n_genes))
    for row, ((i, j), kind) in enumerate(zip(pairs, kinds)):
        untouched = (on_target[i] + downstream[i] == 0) & (on_target[j] + downstream[j] == 0)
        double_effects[row] = (
            on_target[i]
            + on_target[j]
            + _double_downstream(
                rng,
                kind,
                downstream[i],
                downstream[j],
                untouched,
                synergy_factor,
                suppression_factor,
                effect_fraction,
                neomorphic_sd,
            )
        )
    single_names = list(genes[targets])
    double_names = [f"{single_names[i]}+{single_names[j]}" for i, j in pairs]
    effects = np.vstack([np.zeros((1, n_genes)), on_target + downstream, double_effects])  # (conditions, genes)
    sizes = [n_control] + [cells_per_condition] * (n_single + n_double)
    condition_index = np.repeat(np.arange(len(sizes)), sizes)
    eta = (baseline + effects).astype(np.float32)[condition_index]  # (cells, genes)
    counts, size_factor, layers = _sample_cells(rng, eta, theta, library_log_mean, library_log_sd, store_means)
    names = [CONTROL] + single_names + double_names
    labels = pd.Series(np.asarray(names, dtype=object)[condition_index])
    parsed = perturbation_table(labels)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels, categories=names),
            "condition": pd.Categorical(labels, categories=names),
            "target_1": pd.Categorical(parsed["target_1"]),
            "target_2": pd.Categorical(parsed["target_2"]),
            "n_targets": parsed["n_targets"].to_numpy(),
            "is_control": parsed["is_control"].to_numpy(),
            "size_factor": size_factor,
            "library_size": row_sums(counts),
        },
    )
    obs.index = [f"cell_{i}" for i in range(len(obs))]
    truth = {
        "gene_baseline": baseline,
        "single_effects": pd.DataFrame(on_target + downstream, index=single_names, columns=genes),
        "double_effects": pd.DataFrame(double_effects, index=double_names, columns=genes),
        "interactions": pd.DataFrame(
            {
                "target_1": [single_names[i] for i, _ in pairs],
                "target_2": [single_names[j] for _, j in pairs],
                "interaction_type": [str(kind) for kind in kinds],
            },
            index=double_names,
        ),
        "dispersion": theta,
    }
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes), layers=layers)
    adata.uns["ground_truth"] = truth
    adata.uns["dataset"] = "simulated_perturbations"
    return adata


def simulate_trajectory(
    n_cells: int = 1000,
    n_genes: int = 500,
    n_branches: int = 2,
    branch_point: float = 0.3,
    state_effect_sd: float = 1.0,
    state_gene_fraction: float = 0.2,
    dispersion: float | np.ndarray = 5.0,
    library_log_mean: float = 8.0,
    library_log_sd: float = 0.3,
    baseline_sd: float = 1.5,
    seed: int = 0,
    store_means: bool = False,
) -> ad.AnnData:
    """Cells along a branching differentiation path with known pseudotime.

    Pseudotime ``t ~ Uniform(0, 1)``. A trunk runs from the start state ``a`` to the branch-point
    state ``a + d_0`` for ``t < branch_point``; each branch ``b`` then runs from ``a + d_0`` to
    ``a + d_0 + d_b``. The log-frequency is linear in t along each segment:

        eta(t) = a + (t / t_b) d_0                                     for t < t_b
        eta(t) = a + d_0 + ((t - t_b) / (1 - t_b)) d_b                  for t >= t_b

    n_branches: number of end states (1 gives a linear path); a cell past the branch point
        follows a branch chosen uniformly at random.
    branch_point: t_b in (0, 1).
    state_effect_sd, state_gene_fraction: shifts ``d ~ N(0, sd)`` on a random fraction of genes.
    dispersion, library_log_mean, library_log_sd, baseline_sd, seed, store_means: as in
    :func:`simulate_counts`.

    Returns AnnData with obs ``pseudotime``, ``branch`` ("trunk", "branch_0", ...),
    ``size_factor``, ``library_size``; uns["ground_truth"]: ``gene_baseline`` (G,),
    ``trunk_shift`` d_0 (G,), ``branch_shifts`` (B, G), ``branch_point``, ``dispersion``.
    """
    if not 0.0 < branch_point < 1.0:
        raise ValueError(f"branch_point must lie in (0, 1), got {branch_point}.")
    _check_positive(n_cells=n_cells, n_genes=n_genes, n_branches=n_branches)
    rng = np.random.default_rng(seed)
    theta = _gene_dispersion(dispersion, n_genes)
    baseline = rng.normal(0.0, baseline_sd, size=n_genes)
    trunk_shift = _sparse_normal(rng, (n_genes,), state_gene_fraction, state_effect_sd)
    branch_shifts = _sparse_normal(rng, (n_branches, n_genes), state_gene_fraction, state_effect_sd)
    pseudotime = rng.random(n_cells)
    lineage = rng.integers(n_branches, size=n_cells)
    on_trunk = pseudotime < branch_point
    trunk_progress = np.minimum(pseudotime / branch_point, 1.0)[:, None]
    branch_progress = np.clip((pseudotime - branch_point) / (1.0 - branch_point), 0.0, None)[:, None]
    eta = (baseline + trunk_progress * trunk_shift + branch_progress * branch_shifts[lineage]).astype(np.float32)
    counts, size_factor, layers = _sample_cells(rng, eta, theta, library_log_mean, library_log_sd, store_means)
    branch = np.where(on_trunk, "trunk", np.char.add("branch_", lineage.astype(str)))
    obs = pd.DataFrame(
        {
            "pseudotime": pseudotime,
            "branch": pd.Categorical(branch, categories=["trunk"] + [f"branch_{b}" for b in range(n_branches)]),
            "size_factor": size_factor,
            "library_size": row_sums(counts),
        },
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    truth = {
        "gene_baseline": baseline,
        "trunk_shift": trunk_shift,
        "branch_shifts": branch_shifts,
        "branch_point": branch_point,
        "dispersion": theta,
    }
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=_gene_names(n_genes)), layers=layers)
    adata.uns["ground_truth"] = truth
    adata.uns["dataset"] = "simulated_trajectory"
    return adata
