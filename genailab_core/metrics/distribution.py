"""How close a generated set of cells is to a real one: two-sample distances, kNN precision and recall,
a real-vs-generated classifier, and the real-data floor every such number is reported beside.

Every function takes two arrays of cells, ``x: (n, features)`` and ``y: (m, features)`` with the same
features (genes, or principal components); n and m may differ. A distance means nothing on its own:
:func:`real_data_floor` gives the same metric between two disjoint halves of the real cells (the
"ceiling" of cell-eval), the value a perfect generator would reach at this sample size.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from ._arrays import as_dense
from .calibration import calibration_summary, gene_calibration


def check_pair(x, y, what: str = "the two sets of cells") -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (cells, features) arrays; a clear error if they cannot be compared."""
    x, y = as_dense(x), as_dense(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"Cannot compare {what}: shapes {x.shape} and {y.shape}. Both must be (cells, features) "
                         "with the same features; subset both to the same genes (or the same PCs) first.")
    if min(len(x), len(y)) < 2:
        raise ValueError(f"Cannot compare {what}: each needs at least 2 cells, got {len(x)} and {len(y)}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"Cannot compare {what}: they contain NaN or Inf; remove those cells first.")
    return x, y


def mmd_rbf(x, y, bandwidths=None, unbiased: bool = True) -> float:
    """Squared MMD with a sum of RBF kernels (Gretton et al. 2012, JMLR, eq. 3 unbiased; eq. 5 biased).

        MMD_u^2 = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j),
        k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))

    bandwidths s: default the median pairwise distance of the pooled cells times (0.5, 1, 2) (the median
    heuristic, computed once). The unbiased MMD_u^2 is 0 in expectation for one distribution (so it can be
    slightly negative, and its real-data floor is 0 up to noise). ``unbiased=False`` gives the V-statistic
    MMD_b^2 (the means include i = j, as most single-cell and flow-matching code computes it): >= 0, and
    positive between two finite samples of one distribution, so its floor is a positive number.
    """
    x, y = check_pair(x, y)
    d_xx, d_yy, d_xy = cdist(x, x, "sqeuclidean"), cdist(y, y, "sqeuclidean"), cdist(x, y, "sqeuclidean")
    if bandwidths is None:
        pooled = np.concatenate([d_xx[np.triu_indices(len(x), 1)], d_yy[np.triu_indices(len(y), 1)], d_xy.ravel()])
        bandwidths = np.sqrt(np.median(pooled)) * np.array([0.5, 1.0, 2.0])
    kernel = lambda d: sum(np.exp(-d / (2 * s ** 2)) for s in np.atleast_1d(bandwidths))   # noqa: E731
    n, m = len(x), len(y)
    k_xx, k_yy = kernel(d_xx), kernel(d_yy)
    if not unbiased:
        return float(k_xx.mean() + k_yy.mean() - 2 * kernel(d_xy).mean())
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kernel(d_xy).mean())


def energy_distance(x, y) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo 2013), Euclidean norms.

    V-statistics (means over all pairs, i = j included), so that in 1-D it is the square of
    ``scipy.stats.energy_distance``. 0 only when the two distributions are equal.
    """
    x, y = check_pair(x, y)
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def wasserstein(x, y, p: int = 2, max_cells: int = 5000) -> float:
    """Exact W_p between the two empirical distributions (uniform weights), by optimal transport (POT's emd2).

        W_p = (min_pi sum_ij pi_ij |x_i - y_j|^p)^(1/p)

    Exact OT costs O(n^3); above ``max_cells`` per set it raises instead of running for hours. Compute it
    on a few principal components (:func:`pca_of_real`), not on thousands of genes.
    """
    import ot

    x, y = check_pair(x, y)
    if max(len(x), len(y)) > max_cells:
        raise ValueError(f"Exact W_p on {len(x)} x {len(y)} cells is too slow (O(n^3)); subsample each set to at "
                         f"most max_cells={max_cells} cells, or raise max_cells.")
    cost = cdist(x, y, "euclidean") ** p
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10_000_000)
                 ** (1 / p))


def pca_of_real(real, *others, n_components: int = 30, seed: int = 0) -> list[np.ndarray]:
    """Principal components fitted on the real cells only, applied to ``real`` and to each of ``others``.

    Fitting on the real cells keeps a generator from choosing the axes it is measured on.
    """
    from sklearn.decomposition import PCA

    real = as_dense(real)
    pca = PCA(n_components=min(n_components, *real.shape), random_state=seed).fit(real)
    return [pca.transform(a) for a in (real, *(check_pair(real, o)[1] for o in others))]


def knn_precision_recall(real, generated, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, eq. 1-3).

    The real manifold is the union of balls around each real cell with radius its distance to its k-th
    nearest real neighbour (itself excluded). Precision: the share of generated cells inside it (are the
    samples realistic?). Recall: the share of real cells inside the generated manifold (is the data covered?).
    """
    real, generated = check_pair(real, generated)

    def inside(support, queries):
        radius = np.sort(cdist(support, support), axis=1)[:, k]                 # column 0 is the point itself
        return (cdist(queries, support) <= radius[None, :]).any(1).mean()

    return float(inside(real, generated)), float(inside(generated, real))


def classifier_auc(real, generated, n_folds: int = 5, seed: int = 0, model: str = "logistic",
                   n_trees: int = 200) -> float:
    """Cross-validated ROC AUC of a classifier telling real from generated cells.

    model: "logistic" (a logistic regression on standardized features: it sees differences of means and
    linear directions only) or "forest" (a random forest of ``n_trees`` trees, the real-vs-generated classifier of
    scDiffusion, Luo et al. 2024: it also sees differences of shape, spread and interactions).
    0.5: the classifier cannot tell them apart; 1: every generated cell is recognisable. Out-of-fold
    probabilities over stratified folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    real, generated = check_pair(real, generated)
    features = np.concatenate([real, generated])
    is_generated = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    if model == "logistic":
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    elif model == "forest":
        from sklearn.ensemble import RandomForestClassifier
        classifier = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=2, random_state=seed, n_jobs=1)
    else:
        raise ValueError(f"model must be 'logistic' or 'forest', got {model!r}.")
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(classifier, features, is_generated, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(is_generated, scores))


def gene_moment_errors(real_counts, generated_counts) -> dict[str, float]:
    """Per-gene moments of generated vs real counts: mean absolute error of log1p(mean) and log1p(variance),
    mean absolute error of the zero rate, and the Pearson r of log means and log variances."""
    real_counts, generated_counts = check_pair(real_counts, generated_counts, "real and generated counts")
    table = gene_calibration(real_counts, generated_counts)
    errors = {f"{m}_log1p_mae": float(np.abs(np.log1p(table[f"{m}_observed"]) - np.log1p(table[f"{m}_model"])).mean())
              for m in ("mean", "var")}
    return {**errors, **calibration_summary(table)}


def real_data_floor(metric: Callable[..., float], real, n_splits: int = 3, seed: int = 0,
                    **kwargs) -> tuple[float, float]:
    """The metric between two disjoint random halves of the real cells: mean and s.d. over ``n_splits``.

    The value a generator that draws from the real distribution would score at half this sample size.
    """
    real = as_dense(real)
    values = [metric(real[a], real[b], **kwargs) for a, b in _halves(len(real), n_splits, seed)]
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if n_splits > 1 else 0.0)


def _halves(n: int, n_splits: int, seed: int):
    """``n_splits`` random pairs of disjoint halves (index arrays of n // 2 cells) of n cells."""
    rng = np.random.default_rng(seed)
    for _ in range(n_splits):
        order = rng.permutation(n)
        yield order[: n // 2], order[n // 2: 2 * (n // 2)]


DEFAULT_METRICS: Mapping[str, Callable[..., float]] = {
    "MMD^2 (RBF)": mmd_rbf, "energy distance": energy_distance, "W2": wasserstein,
    "real-vs-generated AUC": classifier_auc,
}


def compare_to_real(generated, real, metrics: Mapping[str, Callable[..., float]] = DEFAULT_METRICS,
                    n_splits: int = 3, seed: int = 0) -> pd.DataFrame:
    """Each metric of generated vs real cells beside its real-data floor, like for like; one row per metric.

    generated, real: (cells, features), e.g. PCs from :func:`pca_of_real`; ``real`` should be held-out cells,
    not the generator's training cells. Each split halves ``real`` into A and B: the floor is metric(A, B),
    the score metric(G, B) with G a random |A| generated cells, so both use the same sizes and the same
    reference B (biased estimators such as W2 shrink with n, so sizes must match). Mean and s.d. over splits.
    """
    generated, real = check_pair(generated, real, "generated and real cells")
    if len(generated) < len(real) // 2:
        raise ValueError(f"compare_to_real needs at least half as many generated cells as real ones "
                         f"({len(real) // 2}), got {len(generated)}; generate more cells.")
    rng = np.random.default_rng(seed + 1)
    rows = {}
    for name, metric in metrics.items():
        scores, floors = [], []
        for a, b in _halves(len(real), n_splits, seed):
            drawn = generated[rng.choice(len(generated), len(a), replace=False)]
            scores.append(metric(drawn, real[b]))
            floors.append(metric(real[a], real[b]))
        rows[name] = {"generated vs real": np.mean(scores), "generated s.d.": np.std(scores, ddof=1),
                      "real-data floor": np.mean(floors), "floor s.d.": np.std(floors, ddof=1)}
    return pd.DataFrame(rows).T
