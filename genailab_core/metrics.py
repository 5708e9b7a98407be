"""Evaluation metrics used across the book: likelihoods, calibration, latent structure."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier


@torch.no_grad()
def mean_over_batches(per_cell_fn, batches: Iterable[dict], device: str | torch.device = "cpu",
                      conditions=None) -> float:
    """Mean over all cells of ``per_cell_fn(x, c) -> (batch,)``; c = ``conditions(batch)`` (or None)."""
    values = []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        values.append(per_cell_fn(batch["x"], conditions(batch) if conditions else None).cpu())
    return float(torch.cat(values).mean())


def heldout_elbo(model, batches: Iterable[dict], n_repeats: int = 1) -> float:
    """Mean per-cell ELBO (nats) on held-out cells, averaged over ``n_repeats`` draws of z."""
    model.eval()
    device = next(model.parameters()).device
    return float(np.mean([mean_over_batches(model.elbo, batches, device, _conditions_of(model))
                          for _ in range(n_repeats)]))


def marginal_log_likelihood(model, batches: Iterable[dict], n_samples: int = 100) -> float:
    """Mean per-cell importance-sampled log p(x) (Burda et al. 2016), ``n_samples`` draws of q(z|x)."""
    model.eval()
    device = next(model.parameters()).device
    return mean_over_batches(lambda x, c: model.log_likelihood_is(x, c, n_samples=n_samples), batches, device,
                             _conditions_of(model))


def _conditions_of(model):
    """The model's way to read condition codes from a batch, if it is conditional."""
    return getattr(model, "conditions", None)


def knn_accuracy(embedding: np.ndarray, labels: np.ndarray, k: int = 15, n_folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier of ``labels`` on ``embedding``.

    embedding: (cells, dims); labels: (cells,). Stratified ``n_folds``-fold, Euclidean distance.
    """
    labels = np.asarray(labels)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), np.asarray(embedding), labels, cv=folds)
    return float(scores.mean())


def silhouette(embedding: np.ndarray, labels: np.ndarray, seed: int = 0, sample_size: int | None = 5000) -> float:
    """Mean silhouette width of ``labels`` in ``embedding`` (Rousseeuw 1987), in [-1, 1]."""
    embedding, labels = np.asarray(embedding), np.asarray(labels)
    size = None if sample_size is None or sample_size >= len(labels) else sample_size
    return float(silhouette_score(embedding, labels, sample_size=size, random_state=seed))


def gene_calibration(observed: np.ndarray, generated: np.ndarray) -> pd.DataFrame:
    """Per-gene mean, variance and zero rate of observed vs model-generated counts.

    observed, generated: (cells, genes) arrays of the same shape (e.g. posterior-predictive draws
    for the same cells). Returns one row per gene.
    """
    observed, generated = _dense(observed), _dense(generated)
    if observed.shape != generated.shape:
        raise ValueError(f"observed {observed.shape} and generated {generated.shape} must have the same shape.")
    return pd.DataFrame({
        "mean_observed": observed.mean(0), "mean_model": generated.mean(0),
        "var_observed": observed.var(0), "var_model": generated.var(0),
        "zero_rate_observed": (observed == 0).mean(0), "zero_rate_model": (generated == 0).mean(0),
    })


def calibration_summary(table: pd.DataFrame) -> dict[str, float]:
    """Summaries of ``gene_calibration``: Pearson r of log means / log variances, zero-rate MAE."""
    def log_corr(a, b):
        keep = (table[a] > 0) & (table[b] > 0)
        return float(np.corrcoef(np.log(table.loc[keep, a]), np.log(table.loc[keep, b]))[0, 1])
    return {"mean_log_r": log_corr("mean_observed", "mean_model"),
            "var_log_r": log_corr("var_observed", "var_model"),
            "zero_rate_mae": float(np.abs(table.zero_rate_observed - table.zero_rate_model).mean())}


def _dense(a) -> np.ndarray:
    if hasattr(a, "toarray"):
        a = a.toarray()
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
