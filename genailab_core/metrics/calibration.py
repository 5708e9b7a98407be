"""Per-gene calibration of generated counts: mean, variance and zero rate against the observed ones."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import as_dense


def gene_calibration(observed: np.ndarray, generated: np.ndarray) -> pd.DataFrame:
    """Per-gene mean, variance and zero rate of observed vs model-generated counts.

    observed, generated: (cells, genes) arrays with the same genes (e.g. posterior-predictive draws for the
    same cells, or cells drawn from a generator). Returns one row per gene.
    """
    observed, generated = as_dense(observed), as_dense(generated)
    if observed.ndim != 2 or generated.ndim != 2 or observed.shape[1] != generated.shape[1]:
        raise ValueError(f"observed {observed.shape} and generated {generated.shape} must be (cells, genes) with "
                         "the same genes; subset both to the same genes first.")
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


