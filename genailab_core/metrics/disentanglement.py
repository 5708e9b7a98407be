"""Disentanglement metrics (chapter 4): DCI and MIG against known factors from the simulator."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import as_dense


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

    codes = as_dense(codes)
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

    codes = as_dense(codes)
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
