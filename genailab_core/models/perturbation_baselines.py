"""Baselines for predicting a perturbation's expression profile: no change, mean, additive, linear.

Every predictor has ``fit(pseudobulk, adata=None) -> self`` and ``predict(labels) -> DataFrame``.
``pseudobulk`` is the training table (conditions x genes) of mean log-normalized expression
``mean_c log1p(1e4 x_cg / l_c)`` with a "control" row (:func:`genailab_core.data.perturbation_data.pseudobulk`);
predictions are rows of the same table for the requested perturbations, so every method is scored the
same way. After Ahlmann-Eltze et al. (2025) and GEARS (Roohani et al. 2024):

- :class:`NoChange`: the control profile.
- :class:`TrainingMean`: the mean of the training perturbations.
- :class:`Additive`: ``ctrl + (y_A - ctrl) + (y_B - ctrl)`` from the measured singles.
- :class:`LinearPCA`: Ahlmann-Eltze et al.'s linear model ``Y ~ G W P^T + b`` with PCA embeddings.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ..data.labels import CONTROL, targets_of


class _Baseline(ABC):
    """Shared checks: a pseudobulk table with a control row; predictions as a DataFrame."""

    control = CONTROL

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        if self.control not in pseudobulk.index:
            raise ValueError(f"The training pseudobulk has no {self.control!r} row; every prediction starts from it.")
        self.table = pseudobulk
        self.ctrl = pseudobulk.loc[self.control].to_numpy()                     # (genes,)
        return self

    def predict(self, labels: Sequence[str]) -> pd.DataFrame:
        rows = np.vstack([self.predict_one(str(label)) for label in labels]) if len(labels) else \
            np.zeros((0, self.table.shape[1]))
        return pd.DataFrame(rows, index=list(labels), columns=self.table.columns)

    @abstractmethod
    def predict_one(self, label: str) -> np.ndarray:
        """The predicted profile (genes,) of one perturbation label."""


class NoChange(_Baseline):
    """Predict the control profile for every perturbation."""

    def predict_one(self, label: str) -> np.ndarray:
        targets_of(label)                                                       # rejects a malformed label
        return self.ctrl


class TrainingMean(_Baseline):
    """Predict the mean profile of the training perturbations (control excluded)."""

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        super().fit(pseudobulk, adata)
        rows = pseudobulk.drop(index=self.control)
        self.mean = rows.to_numpy().mean(0) if len(rows) else self.ctrl         # (genes,)
        return self

    def predict_one(self, label: str) -> np.ndarray:
        targets_of(label)                                                       # rejects a malformed label
        return self.mean


class Additive(_Baseline):
    """y_AB = ctrl + (y_A - ctrl) + (y_B - ctrl) (Norman et al. 2019; Ahlmann-Eltze et al. 2025, eq. 1).

    A gene whose single was not measured in training contributes no change; a training
    perturbation is returned as measured.
    """

    def predict_one(self, label: str) -> np.ndarray:
        if label in self.table.index:
            return self.table.loc[label].to_numpy()
        delta = np.zeros_like(self.ctrl)
        for gene in targets_of(label):
            if gene in self.table.index:
                delta += self.table.loc[gene].to_numpy() - self.ctrl             # single effect y_A - ctrl
        return self.ctrl + delta


class LinearPCA(_Baseline):
    """The linear model of Ahlmann-Eltze et al. (2025): Y ~ G W P^T + b, fitted by ridge regression.

    Y (genes, perturbations) is the training pseudobulk and b its row means. G (genes, K) are the
    top K principal axes over genes of Y - b; the perturbations' scores on them, P_train = U S,
    give each training perturbation a K-dim embedding. A perturbation is the sum of its genes'
    embeddings, E (targets, K), solved by ridge from P_train ~ A E (A: perturbation x target
    indicator), so doubles and unseen combinations get one; a gene never trained has a zero
    embedding and is predicted as b. Then (their eq. 2)

        W = (G^T G + lam I)^-1 G^T (Y - b) P (P^T P + lam I)^-1,   y_new = b + G W p_new.
    """

    def __init__(self, n_components: int = 10, ridge: float = 0.1):
        self.n_components, self.ridge = n_components, ridge

    def fit(self, pseudobulk: pd.DataFrame, adata: ad.AnnData | None = None):
        super().fit(pseudobulk, adata)
        labels = list(pseudobulk.index)
        y = pseudobulk.to_numpy().T                                             # (genes, perturbations)
        self.b = y.mean(1)                                                      # (genes,)
        k = max(1, min(self.n_components, len(labels) - 1, y.shape[0]))
        u, s, vt = np.linalg.svd((y - self.b[:, None]).T, full_matrices=False)  # rows: perturbations
        self.G = vt[:k].T                                                       # (genes, K) principal axes
        p_train = u[:, :k] * s[:k]                                              # (perturbations, K) scores
        self.genes = sorted({g for label in labels for g in targets_of(label)})
        a = self._indicator(labels)                                             # (perturbations, targets)
        lam = self.ridge
        self.E = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ p_train)  # (targets, K)
        p = a @ self.E                                                          # (perturbations, K)
        gtg = self.G.T @ self.G + lam * np.eye(k)
        ptp = p.T @ p + lam * np.eye(k)
        self.W = np.linalg.solve(gtg, self.G.T @ (y - self.b[:, None]) @ p) @ np.linalg.inv(ptp)  # (K, K)
        return self

    def _indicator(self, labels: Sequence[str]) -> np.ndarray:
        index = {g: i for i, g in enumerate(self.genes)}
        a = np.zeros((len(labels), len(self.genes)))
        for row, label in enumerate(labels):
            for gene in targets_of(label):
                if gene in index:                                               # unseen gene: no embedding
                    a[row, index[gene]] = 1.0
        return a

    def predict_one(self, label: str) -> np.ndarray:
        p = self._indicator([label]) @ self.E                                   # (1, K)
        return self.b + (self.G @ self.W @ p.T).ravel()                         # y = b + G W p
