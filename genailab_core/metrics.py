"""Evaluation metrics used across the book: likelihoods, calibration, latent structure."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
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


# -- Counterfactual metrics (chapter 3; scGen's protocol, Lotfollahi et al. 2019) ------------------

def mean_expression_r2(real, predicted, genes=None) -> float:
    """R^2 of per-gene mean expression, scGen's score: the squared Pearson correlation of the
    real and predicted per-gene means (the R^2 of a least-squares line through them).

    real: (cells_r, genes) and predicted: (cells_p, genes) on the same scale (log-normalized);
    the numbers of cells may differ. genes: None (all), integer indices or a boolean mask
    selecting the genes to score (e.g. the top-100 DE genes).
    """
    real_mean, predicted_mean = _dense(real).mean(0), _dense(predicted).mean(0)   # (genes,) each
    if real_mean.shape != predicted_mean.shape:
        raise ValueError(f"real has {real_mean.shape[0]} genes but predicted has {predicted_mean.shape[0]}.")
    if genes is not None:
        real_mean, predicted_mean = real_mean[np.asarray(genes)], predicted_mean[np.asarray(genes)]
    if real_mean.size < 2 or real_mean.std() == 0 or predicted_mean.std() == 0:
        raise ValueError("R^2 needs at least 2 genes whose means vary, in both real and predicted.")
    return float(np.corrcoef(real_mean, predicted_mean)[0, 1] ** 2)


def top_de_genes(adata, groupby: str, group: str, reference: str, n_genes: int = 100,
                 layer: str | None = "log1p", method: str = "wilcoxon", both_directions: bool = False) -> list[str]:
    """The ``n_genes`` top differentially expressed genes of ``group`` vs ``reference`` in
    ``adata.obs[groupby]`` by scanpy's ``rank_genes_groups`` score on the log-normalized ``layer``
    (None: ``.X``): the most up-regulated, as scGen's evaluation takes scanpy's ranking, or with
    ``both_directions`` the largest |score|, up or down.

    Compute it on the genes the model sees (after HVG selection), so every DE gene is scored.
    """
    import scanpy as sc

    if groupby not in adata.obs or not {group, reference} <= set(adata.obs[groupby].astype(str)):
        raise ValueError(f"adata.obs[{groupby!r}] must contain both {group!r} and {reference!r}.")
    result = sc.tl.rank_genes_groups(adata, groupby, groups=[group], reference=reference, method=method,
                                     layer=layer, use_raw=False, copy=True)
    table = sc.get.rank_genes_groups_df(result, group)
    scores = table["scores"].to_numpy()
    order = np.argsort(-(np.abs(scores) if both_directions else scores), kind="stable")
    return table["names"].to_numpy()[order][:n_genes].tolist()


def _dense(a) -> np.ndarray:
    if hasattr(a, "toarray"):
        a = a.toarray()
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Perturbation metrics
# ---------------------------------------------------------------------------------------------
# Scores of predicted perturbation profiles (mean log-normalized expression per perturbation)
# against the observed ones, as used by GEARS (Roohani et al. 2024), Ahlmann-Eltze et al. (2025)
# and PerturBench (Wu et al. 2024). Arguments are 1-D (genes,) arrays unless stated; ``genes``
# selects gene indices (None: all genes); ``control`` is the observed control profile.


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
    """Pearson r of the changes from control, corr(pred - ctrl, truth - ctrl) (GEARS' "Pearson delta").

    A prediction of no change (constant over ``genes``) scores 0: it carries no correlation; NaN
    when the observed change is constant.
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


def discrimination_rank(predictions: np.ndarray, truths: np.ndarray, genes=None) -> np.ndarray:
    """Normalized rank of each true perturbation among all predictions (PerturBench, Wu et al. 2024).

    predictions, truths: (perturbations, genes), row i of each for the same perturbation. For
    perturbation i, the share of the *other* predictions closer (Euclidean) to truth i than
    prediction i is, ties counting half: 0 = its own prediction is the closest, 0.5 = chance
    (every identical prediction scores 0.5). Returns (perturbations,).
    """
    pred, true = np.asarray(predictions, dtype=np.float64), np.asarray(truths, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"predictions {pred.shape} and truths {true.shape} must both be (perturbations, genes).")
    if genes is not None:
        pred, true = pred[:, genes], true[:, genes]
    n = pred.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    dist = np.sqrt(((true[:, None, :] - pred[None, :, :]) ** 2).sum(-1))  # (truth i, prediction j)
    own = np.diag(dist)[:, None]
    closer = (dist < own).sum(1) + 0.5 * ((dist == own).sum(1) - 1)        # minus the own prediction
    return closer / (n - 1)


# -- Disentanglement metrics (chapter 4; known factors from the simulator) -------------------------

def active_units(means, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Active units of Burda et al. (2016): latent dimension d is active if Cov_x(E_q[z_d | x]) > threshold.

    means: (cells, latent) posterior means E_q[z | x]. Returns (number active, (latent,) variances).
    A dimension whose posterior mean does not vary across cells carries no information about them.
    """
    variances = _dense(means).var(0)
    return int((variances > threshold).sum()), variances


def _factor_matrix(factors, discrete) -> tuple[np.ndarray, list[bool]]:
    """Factors as a (cells, n_factors) array (categories -> integer codes) and a discreteness flag each."""
    if isinstance(factors, pd.DataFrame):
        columns = []
        flags = []
        for name in factors.columns:
            column = factors[name]
            is_discrete = not pd.api.types.is_float_dtype(column)
            columns.append(pd.Categorical(column).codes if is_discrete else column.to_numpy(dtype=np.float64))
            flags.append(is_discrete)
        array = np.column_stack(columns).astype(np.float64)
    else:
        array = np.asarray(factors, dtype=np.float64)
        array = array[:, None] if array.ndim == 1 else array
        flags = [False] * array.shape[1]
    if discrete is not None:
        flags = list(discrete)
    if len(flags) != array.shape[1]:
        raise ValueError(f"discrete has {len(flags)} flags for {array.shape[1]} factors.")
    return array, flags


def _normalized_entropy(p: np.ndarray, axis: int, base: int) -> np.ndarray:
    """Entropy of the distributions p along ``axis`` (p >= 0, normalized here), in units of log(base)."""
    total = p.sum(axis=axis, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[axis])
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=axis) / np.log(base)


def dci(codes, factors, discrete=None, regressor: str = "gbt", test_fraction: float = 0.3,
        seed: int = 0) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    For each factor v_j a regressor predicts v_j from the code z (classifier for discrete factors);
    its importances R_dj (latent d for factor j) make the importance matrix R: (latent, factors).

    - disentanglement D_d = 1 - H_J(P_d.) with P_dj = R_dj / sum_k R_dk (entropy base J = n_factors):
      1 when latent d matters for one factor only; the total D = sum_d rho_d D_d, rho_d = share of R in row d;
    - completeness C_j = 1 - H_L(R_.j / sum_d R_dj) (base L = n_latent): 1 when one latent captures v_j;
      the total C is the mean over factors;
    - informativeness: held-out accuracy (discrete) or R^2 (continuous, clipped at 0) of the regressor,
      mean over factors (the paper reports the prediction error; higher is better here).

    codes: (cells, latent); factors: (cells, n_factors) array or DataFrame (categorical/integer columns
    are discrete, float columns continuous, unless ``discrete`` gives a flag per factor).
    regressor: "gbt" (gradient-boosted trees, as disentanglement_lib; impurity importances) or
    "lasso" (L1-penalized linear models on standardized codes; |coefficients|, as Eastwood & Williams).
    """
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import LassoCV, LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    codes = _dense(codes)
    values, flags = _factor_matrix(factors, discrete)
    if codes.shape[0] != values.shape[0]:
        raise ValueError(f"codes have {codes.shape[0]} cells but factors have {values.shape[0]}.")
    scale = codes.std(0)
    codes = (codes - codes.mean(0)) / np.where(scale > 0, scale, 1.0)
    idx_train, idx_test = train_test_split(np.arange(len(codes)), test_size=test_fraction, random_state=seed)
    n_latent, n_factors = codes.shape[1], values.shape[1]
    importance = np.zeros((n_latent, n_factors))
    scores = np.zeros(n_factors)
    for j in range(n_factors):
        target, is_discrete = values[:, j], flags[j]
        if is_discrete:
            target = target.astype(int)
            if regressor == "gbt":
                model = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=seed)
            else:
                model = LogisticRegression(penalty="l1", solver="saga", C=0.1, max_iter=2000)
        else:
            target = StandardScaler().fit_transform(target[:, None]).ravel()
            model = (GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=seed)
                     if regressor == "gbt" else LassoCV(cv=3, random_state=seed))
        model.fit(codes[idx_train], target[idx_train])
        if regressor == "gbt":
            importance[:, j] = model.feature_importances_
        else:
            importance[:, j] = np.abs(np.atleast_2d(model.coef_)).sum(0)
        score = model.score(codes[idx_test], target[idx_test])     # accuracy or R^2
        scores[j] = score if is_discrete else max(score, 0.0)
    row_share = importance.sum(1) / max(importance.sum(), 1e-12)                      # rho_d
    disentanglement_per_latent = 1.0 - _normalized_entropy(importance, axis=1, base=max(n_factors, 2))
    completeness_per_factor = 1.0 - _normalized_entropy(importance, axis=0, base=max(n_latent, 2))
    return {"disentanglement": float((row_share * disentanglement_per_latent).sum()),
            "completeness": float(completeness_per_factor.mean()),
            "informativeness": float(scores.mean()),
            "completeness_per_factor": completeness_per_factor,
            "informativeness_per_factor": scores,
            "importance": importance}


def _discretize(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-frequency bins of a continuous vector (cells,) -> integer codes; a constant gives one bin."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.digitize(values, edges)


def mig(codes, factors, discrete=None, n_bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018), with histogram estimates of mutual information.

    Each latent dimension (and each continuous factor) is discretized into ``n_bins`` equal-frequency
    bins; I(z_d; v_j) is the plug-in mutual information of the binned values (nats). For each factor,

        MIG_j = (I(z_(1); v_j) - I(z_(2); v_j)) / H(v_j),

    the gap between the two latents most informative about v_j, normalized by the factor's entropy:
    1 when one latent alone carries v_j, near 0 when two latents share it (or none carries it).
    codes: (cells, latent); factors, discrete: as :func:`dci`. Returns the mean MIG, MIG per factor and
    the (latent, factors) mutual-information matrix.
    """
    from sklearn.metrics import mutual_info_score

    codes = _dense(codes)
    values, flags = _factor_matrix(factors, discrete)
    binned_codes = [_discretize(codes[:, d], n_bins) for d in range(codes.shape[1])]
    binned_factors = [values[:, j].astype(int) if flags[j] else _discretize(values[:, j], n_bins)
                      for j in range(values.shape[1])]
    information = np.array([[mutual_info_score(v, z) for v in binned_factors] for z in binned_codes])
    entropy = np.array([mutual_info_score(v, v) for v in binned_factors])
    top_two = -np.sort(-information, axis=0)[:2] if codes.shape[1] > 1 else np.vstack([information, 0 * information])
    per_factor = (top_two[0] - top_two[1]) / np.where(entropy > 0, entropy, 1.0)
    return {"mig": float(per_factor.mean()), "mig_per_factor": per_factor, "mutual_information": information,
            "factor_entropy": entropy}
