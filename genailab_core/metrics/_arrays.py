"""Array coercion shared by the metrics: every metric takes arrays (numpy, scipy sparse or torch)."""
from __future__ import annotations

import numpy as np
import torch


def as_dense(a) -> np.ndarray:
    """A float64 numpy array from a numpy, scipy-sparse or torch array."""
    if hasattr(a, "toarray"):
        a = a.toarray()
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


