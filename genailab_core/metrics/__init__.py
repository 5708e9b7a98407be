"""Metrics. Every metric takes arrays (numpy, scipy sparse or torch), never a model; evaluation that
needs a model (held-out ELBO, importance-sampled log-likelihood) lives in ``genailab_core.models``.

- ``structure``: kNN accuracy and confusion, silhouette, active units;
- ``calibration``: per-gene mean, variance and zero rate of generated vs observed counts;
- ``counterfactual``: scGen's R^2 of per-gene means, its split-half real-data floor, top DE genes;
- ``perturbation``: L2, Pearson delta, normalized MSE, direction, synergy, discrimination rank;
- ``disentanglement``: DCI and MIG;
- ``distribution``: generated vs real cells (MMD, energy distance, W_p, kNN precision/recall,
  real-vs-generated AUC, per-gene moments), each beside its real-data floor.
"""
from .calibration import calibration_summary, gene_calibration
from .counterfactual import mean_expression_r2, split_half_r2, top_de_genes
from .disentanglement import dci, mig
from .distribution import (classifier_auc, compare_to_real, energy_distance, gene_moment_errors,
                           knn_precision_recall, mmd_rbf, pca_of_real, real_data_floor, wasserstein)
from .perturbation import (direction_accuracy, discrimination_rank, l2_distance, mse_normalized, pearson_delta,
                           synergy_detection, synergy_score, top_expressed_genes)
from .embedding import (effective_rank, majority_accuracy, per_dimension_std, probe_accuracy,
                        relative_view_distance, singular_values)
from .structure import active_units, knn_accuracy, knn_confusion, silhouette

__all__ = ["active_units", "calibration_summary", "classifier_auc", "compare_to_real", "energy_distance",
           "gene_moment_errors", "knn_precision_recall", "mmd_rbf", "pca_of_real", "real_data_floor", "wasserstein", "dci", "direction_accuracy", "discrimination_rank",
           "gene_calibration", "knn_accuracy", "knn_confusion", "l2_distance", "mean_expression_r2", "mig",
           "mse_normalized", "pearson_delta", "silhouette", "synergy_detection", "synergy_score",
           "top_de_genes", "top_expressed_genes", "effective_rank", "majority_accuracy", "per_dimension_std",
           "probe_accuracy", "relative_view_distance", "singular_values"]
