"""Cell-state simulators: discrete cell types, batches and continuous programs; branching trajectories.

Both build the log-frequencies ``eta`` (cells, genes) of :mod:`.simulate_core`'s shared NB model.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .simulate_core import (
    _check_positive,
    _gene_names,
    _labels,
    _log_softmax,
    _simulated_anndata,
    _sparse_normal,
    _start,
)


def simulate_counts(
    n_cells: int = 2000, n_genes: int = 1000, n_cell_types: int = 5, n_batches: int = 2, n_programs: int = 3,
    dispersion: float | np.ndarray = 5.0, library_log_mean: float = 8.0, library_log_sd: float = 0.3,
    baseline_sd: float = 1.5, type_effect_sd: float = 1.0, type_marker_fraction: float = 0.1,
    batch_effect_sd: float = 0.2, program_effect_sd: float = 0.5, program_gene_fraction: float = 0.2,
    seed: int = 0, store_means: bool = False,
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
    rng, theta, baseline = _start(seed, dispersion, n_genes, baseline_sd)
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
    obs = {"cell_type": _labels("type", cell_type, n_cell_types), "batch": _labels("batch", batch, n_batches)}
    obs.update({f"program_{k}": scores[:, k] for k in range(n_programs)})
    truth = {"gene_baseline": baseline, "type_effects": type_effects,
             "type_log_profiles": _log_softmax(baseline + type_effects), "batch_effects": batch_effects,
             "program_loadings": loadings, "dispersion": theta,
             "library_log_mean": library_log_mean, "library_log_sd": library_log_sd}
    library = (library_log_mean, library_log_sd)
    return _simulated_anndata(rng, eta, theta, library, store_means, obs, _gene_names(n_genes), truth,
                              "simulated_counts")


def simulate_trajectory(
    n_cells: int = 1000, n_genes: int = 500, n_branches: int = 2, branch_point: float = 0.3,
    state_effect_sd: float = 1.0, state_gene_fraction: float = 0.2,
    dispersion: float | np.ndarray = 5.0, library_log_mean: float = 8.0, library_log_sd: float = 0.3,
    baseline_sd: float = 1.5, seed: int = 0, store_means: bool = False,
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
    rng, theta, baseline = _start(seed, dispersion, n_genes, baseline_sd)
    trunk_shift = _sparse_normal(rng, (n_genes,), state_gene_fraction, state_effect_sd)
    branch_shifts = _sparse_normal(rng, (n_branches, n_genes), state_gene_fraction, state_effect_sd)
    pseudotime = rng.random(n_cells)
    lineage = rng.integers(n_branches, size=n_cells)
    on_trunk = pseudotime < branch_point
    trunk_progress = np.minimum(pseudotime / branch_point, 1.0)[:, None]
    branch_progress = np.clip((pseudotime - branch_point) / (1.0 - branch_point), 0.0, None)[:, None]
    eta = (baseline + trunk_progress * trunk_shift + branch_progress * branch_shifts[lineage]).astype(np.float32)
    branch = np.where(on_trunk, "trunk", np.char.add("branch_", lineage.astype(str)))
    obs = {
        "pseudotime": pseudotime,
        "branch": pd.Categorical(branch, categories=["trunk"] + [f"branch_{b}" for b in range(n_branches)]),
    }
    truth = {"gene_baseline": baseline, "trunk_shift": trunk_shift, "branch_shifts": branch_shifts,
             "branch_point": branch_point, "dispersion": theta}
    library = (library_log_mean, library_log_sd)
    return _simulated_anndata(rng, eta, theta, library, store_means, obs, _gene_names(n_genes), truth,
                              "simulated_trajectory")
