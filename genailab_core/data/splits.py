"""Train/validation/test splits: of cells, and of whole perturbations.

Cell splits measure how well a model fits unseen cells of seen conditions. Perturbation
splits hold out whole perturbations (every cell of them), so a model is scored on conditions
it never saw; the control is never held out, since every prediction starts from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONTROL = "control"


@dataclass(frozen=True)
class CellSplit:
    """Disjoint index arrays (int64, sorted) into the cells of one data set."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def n_cells(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)


def split_cells(
    n_cells: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify: Sequence | np.ndarray | None = None,
) -> CellSplit:
    """Random split of ``range(n_cells)`` into train/val/test.

    val_fraction, test_fraction: shares of cells (0 allowed; they must sum to < 1); each part
        gets ``round(fraction * n_cells)`` cells.
    stratify: one label per cell (e.g. ``adata.obs['cell_type']``); each label keeps its share
        in every part (scikit-learn's ``train_test_split(stratify=...)``).
    seed: same seed, same split.
    """
    from sklearn.model_selection import train_test_split

    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) and sum to < 1."
        )
    labels = None if stratify is None else np.asarray(stratify)
    if labels is not None and len(labels) != n_cells:
        raise ValueError(f"stratify has {len(labels)} labels but n_cells={n_cells}; pass one label per cell.")
    index = np.arange(n_cells)
    empty = np.array([], dtype=np.int64)
    n_val, n_test = round(val_fraction * n_cells), round(test_fraction * n_cells)  # exact sizes, no float ceil
    if n_val + n_test == 0:
        return CellSplit(index, empty, empty)
    train, held = train_test_split(index, test_size=n_val + n_test, random_state=seed, stratify=labels)
    if n_test == 0:
        val, test = held, empty
    elif n_val == 0:
        val, test = empty, held
    else:
        held_labels = None if labels is None else labels[held]
        val, test = train_test_split(held, test_size=n_test, random_state=seed + 1, stratify=held_labels)
    return CellSplit(np.sort(train), np.sort(val), np.sort(test))


@dataclass(frozen=True)
class PerturbationSplit:
    """Perturbations seen in training and held out for testing; the control is always in training."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    control: str = CONTROL

    def cell_split(self, perturbation_per_cell: Sequence[str] | np.ndarray | pd.Series) -> CellSplit:
        """Cell indices: train = control + training perturbations, test = held-out ones, val empty.

        Cells of perturbations in neither list raise ValueError (the split was made on other data).
        """
        labels = np.asarray(perturbation_per_cell, dtype=object).astype(str)
        known = set(self.train) | set(self.test) | {self.control}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise ValueError(
                f"{len(unknown)} perturbations (e.g. {unknown[:3]}) are in neither part of this split; make the "
                "split from the same data set's perturbation labels."
            )
        in_test = np.isin(labels, list(self.test))
        return CellSplit(np.flatnonzero(~in_test), np.array([], dtype=np.int64), np.flatnonzero(in_test))


def split_perturbations(
    perturbations: Sequence[str] | np.ndarray | pd.Series,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    control: str = CONTROL,
) -> PerturbationSplit:
    """Hold out whole perturbations (never the control).

    perturbations: labels, one per cell or one per perturbation ("control", "A", "A+B").
    holdout_fraction: share of the non-control perturbations held out, rounded to the nearest
        whole number, at least 1 and at most all but one.
    seed: same seed and labels, same split (labels are sorted before shuffling).
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    names = sorted(set(np.asarray(perturbations, dtype=object).astype(str)) - {control})
    if len(names) < 2:
        raise ValueError(f"Need at least two non-control perturbations to hold one out; found {names}.")
    n_test = int(np.clip(round(holdout_fraction * len(names)), 1, len(names) - 1))
    order = np.random.default_rng(seed).permutation(len(names))
    test = tuple(sorted(names[i] for i in order[:n_test]))
    train = tuple(sorted(names[i] for i in order[n_test:]))
    return PerturbationSplit(train=train, test=test, control=control)
