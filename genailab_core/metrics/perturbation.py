"""Perturbation metrics.

Scores of predicted perturbation profiles (mean log-normalized expression per perturbation)
against the observed ones, as used by GEARS (Roohani et al. 2024), Ahlmann-Eltze et al. (2025)
and PerturBench (Wu et al. 2024). Arguments are 1-D (genes,) arrays unless stated; ``genes``
selects gene indices (None: all genes); ``control`` is the observed control profile.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def _perturbation_vectors(*arrays, genes=None) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise ValueError(f"prediction, truth and control must have the same shape (genes,); got {sorted(shapes)}.")
    return [a[..., np.asarray(genes)] if genes is not None else a for a in out]


def top_expressed_genes(control: np.ndarray, n: int = 1000) -> np.ndarray:
    """Indices of the ``n`` genes most expressed in the control (all genes if fewer), most first."""
    control = np.asarray(control, dtype=np.float64)
    return np.argsort(-control, kind="stable")[: min(n, control.size)]


def l2_distance(prediction: np.ndarray, truth: np.ndarray, genes=None) -> float:
    """||prediction - truth||_2 over ``genes`` (Ahlmann-Eltze et al. 2025: the 1,000 top-expressed genes)."""
    pred, true = _perturbation_vectors(prediction, truth, genes=genes)
    return float(np.sqrt(np.sum((pred - true) ** 2)))


def pearson_delta(prediction: np.ndarray, truth: np.ndarray, control: np.ndarray, genes=None) -> float:
    """Pearson r of the changes from control over ``genes``, corr(pred - ctrl, truth - ctrl).

    The gene set is part of the metric: Ahlmann-Eltze et al. (2025) use the 1,000 genes most
    expressed in control (:func:`top_expressed_genes`, the set of their L2), GEARS (Roohani et al.
    2024) also the top 20 DE genes of the perturbation; name it beside the number. A prediction of
    no change (constant over ``genes``) scores 0: it carries no correlation; NaN when the observed
    change is constant.
    """
    pred, true, ctrl = _perturbation_vectors(prediction, truth, control, genes=genes)
    a, b = pred - ctrl, true - ctrl
    if a.size < 2 or np.ptp(b) == 0:
        return float("nan")
    if np.ptp(a) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def mse_normalized(prediction: np.ndarray, truth: np.ndarray, control: np.ndarray, genes=None) -> float:
    """MSE(pred, truth) / MSE(ctrl, truth) over ``genes``: 1 = as good as predicting no change, 0 = exact."""
    pred, true, ctrl = _perturbation_vectors(prediction, truth, control, genes=genes)
    reference = np.mean((ctrl - true) ** 2)
    return float(np.mean((pred - true) ** 2) / reference) if reference > 0 else float("nan")


def direction_accuracy(prediction: np.ndarray, truth: np.ndarray, control: np.ndarray, genes=None) -> float:
    """Fraction of ``genes`` whose predicted change from control has the observed sign (a zero change never matches)."""
    pred, true, ctrl = _perturbation_vectors(prediction, truth, control, genes=genes)
    return float(np.mean(np.sign(pred - ctrl) * np.sign(true - ctrl) > 0))


def synergy_score(profile: np.ndarray, additive: np.ndarray, control: np.ndarray, genes=None) -> float:
    """How far a double's change goes along its additive expectation: <y - ctrl, a - ctrl> / ||a - ctrl||^2.

    1 = additive, > 1 synergy (a stronger joint effect), < 1 buffering/suppression. ``additive``
    is ctrl + (y_A - ctrl) + (y_B - ctrl) from the *observed* singles, so the score of a
    prediction says what interaction the model predicts.
    """
    y, a, ctrl = _perturbation_vectors(profile, additive, control, genes=genes)
    direction = a - ctrl
    norm = float(direction @ direction)
    return float((y - ctrl) @ direction / norm) if norm > 0 else float("nan")


def synergy_detection(scores: np.ndarray, is_synergy: np.ndarray) -> dict[str, float]:
    """AUPRC (average precision) and AUROC of ranking doubles by ``scores`` against known synergy labels.

    Constant scores give AUROC 0.5 and AUPRC = the share of synergistic doubles; NaN when the
    labels hold only one class or a score is NaN.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(is_synergy, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape.")
    if labels.all() or not labels.any() or np.isnan(scores).any():
        return {"auprc": float("nan"), "auroc": float("nan")}
    return {"auprc": float(average_precision_score(labels, scores)), "auroc": float(roc_auc_score(labels, scores))}


def discrimination_rank(predictions: np.ndarray, truths: np.ndarray, genes=None, groups=None) -> np.ndarray:
    """Normalized rank of each true perturbation among the predictions (PerturBench, Wu et al. 2024).

    predictions, truths: (perturbations, genes), row i of each for the same perturbation. For
    perturbation i, the share of the *other* predictions closer (Euclidean) to truth i than
    prediction i is, ties counting half: 0 = its own prediction is the closest, 0.5 = chance
    (every identical prediction scores 0.5). groups: (perturbations,) labels; when given, each
    perturbation is ranked only among the others of its group (NaN for a group of one), so that
    groups whose profiles differ in size (singles, doubles) cannot make a trivial prediction look
    discriminative. Returns (perturbations,).
    """
    pred, true = np.asarray(predictions, dtype=np.float64), np.asarray(truths, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"predictions {pred.shape} and truths {true.shape} must both be (perturbations, genes).")
    if genes is not None:
        pred, true = pred[:, genes], true[:, genes]
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (pred.shape[0],):
            raise ValueError(f"groups {groups.shape} must be (perturbations,) = ({pred.shape[0]},).")
        out = np.full(pred.shape[0], np.nan)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            out[rows] = discrimination_rank(pred[rows], true[rows])
        return out
    n = pred.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    dist = cdist(true, pred)                                               # (truth i, prediction j) Euclidean
    own = np.diag(dist)[:, None]
    closer = (dist < own).sum(1) + 0.5 * ((dist == own).sum(1) - 1)        # minus the own prediction
    return closer / (n - 1)
