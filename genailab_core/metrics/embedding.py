"""Embeddings without a decoder: is the space collapsed, what does it encode, how stable is it to depth?

A joint-embedding model (chapter 14) has no likelihood to report, so it is judged by its embeddings:

- collapse diagnostics: the per-dimension standard deviation, the singular-value spectrum of the centred
  embedding matrix and its effective rank (Roy & Vetterli 2007). Complete collapse sends every cell to one
  point (all std 0); dimensional collapse keeps a spread but in few directions (Jing et al. 2022), seen as a
  spectrum that falls off a cliff and an effective rank far below the dimension;
- probes on held-out cells: a kNN classifier and a linear (logistic) probe trained on the embeddings of the
  training cells, scored on held-out cells (the linear-evaluation protocol of SimCLR/BYOL/VICReg); a probe
  of a label the embedding should *not* encode (donor, batch) reads the other way;
- the distance between a cell's embedding and that of a thinned copy, relative to the typical distance
  between two different cells, so that it compares embeddings of any scale (PCA, VAE, JEPA).

``structure.knn_accuracy`` is the cross-validated kNN accuracy within one set of cells; the probes here
train and test on disjoint cells.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ._arrays import as_dense

PROBES = ("knn", "linear")


def _matrix(embedding) -> np.ndarray:
    z = as_dense(embedding)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embedding must be a (cells, dims) matrix with at least 2 cells, got shape {z.shape}.")
    if not np.isfinite(z).all():
        raise ValueError("embedding has NaN or Inf entries; a diverged model has no embedding to diagnose.")
    return z


def per_dimension_std(embedding) -> np.ndarray:
    """Standard deviation of each embedding dimension across cells. embedding: (cells, dims) -> (dims,)."""
    return _matrix(embedding).std(0)


def singular_values(embedding) -> np.ndarray:
    """Singular values of the centred embedding matrix, largest first. (cells, dims) -> (min(cells, dims),)."""
    z = _matrix(embedding)
    return np.linalg.svd(z - z.mean(0), compute_uv=False)


def effective_rank(embedding, eps: float = 1e-12) -> float:
    """exp(H(p)), p_k = s_k / sum_j s_j the normalized singular values (Roy & Vetterli 2007, eq. 1-2).

    Between 1 (all variance in one direction, or none) and the dimension (all singular values equal);
    k equal singular values and the rest 0 give exactly k. embedding: (cells, dims) -> float.
    """
    s = singular_values(embedding)
    total = s.sum()
    if total <= eps:                                                   # every cell at one point
        return 1.0
    p = s / total
    p = p[p > eps]
    return float(np.exp(-(p * np.log(p)).sum()))


def probe_accuracy(train_embedding, train_labels, test_embedding, test_labels, kind: str = "knn",
                   k: int = 15, seed: int = 0) -> float:
    """Accuracy on held-out cells of a probe trained on the training cells' embeddings.

    kind: "knn" (k nearest neighbours, Euclidean) or "linear" (multinomial logistic regression on
    standardized dimensions, L2 penalty C = 1). embeddings: (cells, dims); labels: (cells,).
    """
    if kind not in PROBES:
        raise ValueError(f"kind must be one of {PROBES}, got {kind!r}.")
    train_z, test_z = _matrix(train_embedding), _matrix(test_embedding)
    train_y, test_y = np.asarray(train_labels), np.asarray(test_labels)
    if train_z.shape[1] != test_z.shape[1] or len(train_y) != len(train_z) or len(test_y) != len(test_z):
        raise ValueError(f"shapes disagree: train {train_z.shape} with {len(train_y)} labels, test {test_z.shape} "
                         f"with {len(test_y)} labels; give one label per cell and the same dimensions.")
    if kind == "knn":
        probe = KNeighborsClassifier(n_neighbors=min(k, len(train_z)))
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return float(probe.fit(train_z, train_y).score(test_z, test_y))


def majority_accuracy(train_labels, test_labels) -> float:
    """Accuracy of always predicting the training cells' most common label: the floor of every probe."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float((np.asarray(test_labels) == values[counts.argmax()]).mean())


def relative_view_distance(embedding, view_embedding, n_pairs: int = 20000, seed: int = 0) -> float:
    """median_n ||z_n - z'_n|| / median_{n != m} ||z_n - z_m||: how far a cell moves to its other view,
    in units of the typical distance between two different cells.

    embedding, view_embedding: (cells, dims), row n of both the same cell (e.g. the cell and its thinned copy).
    0: the view lands on the cell; about 1: the view is as far as a random other cell. Scale-free, so PCA,
    a VAE and a JEPA compare directly.
    """
    z, v = _matrix(embedding), _matrix(view_embedding)
    if z.shape != v.shape:
        raise ValueError(f"embedding {z.shape} and view_embedding {v.shape} must have the same shape (the same cells).")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(z), n_pairs)
    b = (a + rng.integers(1, len(z), n_pairs)) % len(z)                  # b != a
    between = np.median(np.linalg.norm(z[a] - z[b], axis=1))
    if between <= 0:
        raise ValueError("all cells share one embedding (a collapsed model): the relative distance is undefined.")
    return float(np.median(np.linalg.norm(z - v, axis=1)) / between)
