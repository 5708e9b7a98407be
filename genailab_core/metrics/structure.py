"""Structure of an embedding: how well it separates known labels, and which latent units it uses."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from ._arrays import as_dense


def _knn_cv(k: int, n_folds: int, seed: int) -> tuple[KNeighborsClassifier, StratifiedKFold]:
    """The k-NN classifier and the shuffled stratified folds shared by knn_accuracy and knn_confusion."""
    return KNeighborsClassifier(n_neighbors=k), StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)


def knn_accuracy(embedding: np.ndarray, labels: np.ndarray, k: int = 15, n_folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier of ``labels`` on ``embedding``.

    embedding: (cells, dims); labels: (cells,). Stratified ``n_folds``-fold, Euclidean distance.
    """
    classifier, folds = _knn_cv(k, n_folds, seed)
    scores = cross_val_score(classifier, np.asarray(embedding), np.asarray(labels), cv=folds)
    return float(scores.mean())


def knn_confusion(embedding: np.ndarray, labels: np.ndarray, k: int = 15, n_folds: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """Cross-validated confusion table of the kNN classifier of ``knn_accuracy`` (same folds).

    Rows: true label; columns: predicted label; entries: cells. Each cell is predicted by the fold
    model that did not see it (out-of-fold predictions).
    """
    labels = np.asarray(labels)
    classifier, folds = _knn_cv(k, n_folds, seed)
    predicted = cross_val_predict(classifier, np.asarray(embedding), labels, cv=folds)
    names = np.unique(labels)
    return pd.crosstab(pd.Categorical(labels, names), pd.Categorical(predicted, names),
                       rownames=["true"], colnames=["predicted"], dropna=False)


def silhouette(embedding: np.ndarray, labels: np.ndarray, seed: int = 0, sample_size: int | None = 5000) -> float:
    """Mean silhouette width of ``labels`` in ``embedding`` (Rousseeuw 1987), in [-1, 1]."""
    embedding, labels = np.asarray(embedding), np.asarray(labels)
    size = None if sample_size is None or sample_size >= len(labels) else sample_size
    return float(silhouette_score(embedding, labels, sample_size=size, random_state=seed))



def active_units(means, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Active units of Burda et al. (2016): latent dimension d is active if Cov_x(E_q[z_d | x]) > threshold.

    means: (cells, latent) posterior means E_q[z | x]. Returns (number active, (latent,) variances).
    A dimension whose posterior mean does not vary across cells carries no information about them.
    """
    variances = as_dense(means).var(0)
    return int((variances > threshold).sum()), variances


