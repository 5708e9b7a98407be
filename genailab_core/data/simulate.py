"""Negative-binomial count simulators with known ground truth.

All three simulators share one generative model, the one scVI assumes (Lopez et al. 2018):
a cell ``c`` with library size ``l_c`` expresses gene ``g`` with frequency
``rho_cg = softmax_g(eta_cg)`` and its count is

    x_cg ~ NB(mean = l_c * rho_cg, inverse dispersion = theta_g),
    E[x_cg] = mu_cg,   Var[x_cg] = mu_cg + mu_cg^2 / theta_g,

sampled as the Gamma-Poisson mixture ``lambda ~ Gamma(theta, mu / theta)``,
``x ~ Poisson(lambda)`` by :class:`genailab_core.distributions.NegativeBinomial`.
``l_c ~ LogNormal(library_log_mean, library_log_sd)``. The simulators differ only in the
log-frequencies ``eta``: cell types, batches and continuous programs (:func:`simulate_counts`);
perturbation effects with genetic interactions (:func:`simulate_perturbations`); branching
trajectories (:func:`simulate_trajectory`). The truth (effects, loadings, types of interaction)
is returned in ``uns["ground_truth"]``.

The code: :mod:`.simulate_core` (the shared NB model), :mod:`.simulate_cells` (cell types,
programs, trajectories), :mod:`.simulate_screen` (perturbation screens); this module gathers them.
"""

from __future__ import annotations

from .simulate_cells import simulate_counts, simulate_trajectory
from .simulate_core import sample_negative_binomial
from .simulate_screen import INTERACTION_TYPES, InteractionMix, simulate_perturbations

__all__ = [
    "INTERACTION_TYPES",
    "InteractionMix",
    "sample_negative_binomial",
    "simulate_counts",
    "simulate_perturbations",
    "simulate_trajectory",
]
