"""Train/validation/test splits: of cells, and of whole perturbations.

Cell splits measure how well a model fits unseen cells of seen conditions. Perturbation
splits hold out whole perturbations (every cell of them), so a model is scored on conditions
it never saw; the control is never held out, since every prediction starts from it.

Three perturbation splits:

- :func:`split_perturbations`: a random share of the perturbations (any mix of singles/doubles).
- :func:`split_gears`: GEARS' "simulation" split (Roohani et al. 2024): a share of the *target
  genes* is held out; every perturbation touching one of them is a test perturbation, labelled
  by how many of its genes were seen in training (``single_unseen``, ``seen0``, ``seen1``), and
  a share of the doubles whose genes were both seen (``seen2``) is held out too.
- :func:`split_additive`: Ahlmann-Eltze et al. (2025): every single and half of the doubles
  train, the other doubles are the test set.

Perturbation labels are "control", "A" or "A+B"; parsing them happens here, at the data boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .labels import CONTROL, canonical_label, targets_of

Labels = Sequence[str] | np.ndarray | pd.Series        # perturbation labels, one per cell or per perturbation



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


class LeakError(ValueError):
    """A held-out perturbation, or a held-out gene of a GEARS split, is in the training part."""


@dataclass(frozen=True)
class PerturbationSplit:
    """Perturbations seen in training and held out for testing; the control is always in training.

    groups: test perturbation -> its group (e.g. "seen1"); empty for :func:`split_perturbations`.
    name: what kind of split made it ("random", "gears", "additive").
    """

    train: tuple[str, ...]
    test: tuple[str, ...]
    control: str = CONTROL
    groups: dict[str, str] = field(default_factory=dict, compare=False)
    name: str = "random"

    def test_groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> its test perturbations (one group "test" when the split has no groups)."""
        if not self.groups:
            return {"test": self.test}
        out: dict[str, list[str]] = {}
        for name in self.test:
            out.setdefault(self.groups[name], []).append(name)
        return {group: tuple(names) for group, names in sorted(out.items())}

    def check_no_leak(self) -> None:
        """Raise :class:`LeakError` if a test perturbation (or, for "gears", a held-out gene) is in training.

        A real exception, not ``assert``, so that ``python -O`` does not skip the check.
        """
        overlap = {canonical_label(p, self.control) for p in self.train} & {
            canonical_label(p, self.control) for p in self.test}
        if overlap:
            raise LeakError(f"{len(overlap)} perturbations are in both parts of the split: {sorted(overlap)[:5]}.")
        if self.control in self.test:
            raise LeakError("The control is held out; it must always be in training (predictions start from it).")
        if self.name == "gears":
            seen = {g for p in self.train for g in targets_of(p, self.control)}
            for p in self.test:
                n_seen = sum(g in seen for g in targets_of(p, self.control))
                expected = {"single_unseen": 0, "single_seen": 1, "seen0": 0, "seen1": 1, "seen2": 2}[self.groups[p]]
                if n_seen != expected:
                    raise LeakError(f"{p} is in group {self.groups[p]!r} but {n_seen} of its target genes are "
                                    "perturbed in training.")

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


def split_perturbations(perturbations: Labels, holdout_fraction: float = 0.2, seed: int = 0,
                        control: str = CONTROL) -> PerturbationSplit:
    """Hold out whole perturbations (never the control).

    perturbations: labels, one per cell or one per perturbation ("control", "A", "A+B").
    holdout_fraction: share of the non-control perturbations held out, rounded to the nearest
        whole number, at least 1 and at most all but one.
    seed: same seed and labels, same split (labels are sorted before shuffling).
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    names = _conditions(perturbations, control)
    if len(names) < 2:
        raise ValueError(f"Need at least two non-control perturbations to hold one out; found {names}.")
    n_test = int(np.clip(round(holdout_fraction * len(names)), 1, len(names) - 1))
    order = np.random.default_rng(seed).permutation(len(names))
    test = tuple(sorted(names[i] for i in order[:n_test]))
    train = tuple(sorted(names[i] for i in order[n_test:]))
    return PerturbationSplit(train=train, test=test, control=control)


def _conditions(perturbations: Labels, control: str) -> list[str]:
    """The sorted distinct non-control labels; a malformed label raises here, before any split is drawn."""
    names = sorted(set(np.asarray(perturbations, dtype=object).astype(str)) - {control})
    for name in names:
        targets_of(name, control)  # fails early on malformed labels
    return names


def split_gears(perturbations: Labels, gene_holdout_fraction: float = 0.25, seen2_holdout_fraction: float = 0.5,
                seed: int = 0, control: str = CONTROL) -> PerturbationSplit:
    """GEARS' "simulation" split (Roohani et al. 2024): hold out target genes, then perturbations.

    gene_holdout_fraction: share of the target genes (of all perturbations) held out, at least 1.
    seen2_holdout_fraction: share of the doubles whose two genes both train that is held out too.
    A perturbation with a held-out gene is a test perturbation, in group ``single_unseen`` (a
    single), ``seen0`` (a double, neither gene seen) or ``seen1`` (one gene seen); the held-out
    doubles of two seen genes form ``seen2``. Every training perturbation uses seen genes only.
    """
    if not (0 < gene_holdout_fraction < 1 and 0 <= seen2_holdout_fraction < 1):
        raise ValueError(f"gene_holdout_fraction must be in (0, 1) and seen2_holdout_fraction in [0, 1); got "
                         f"{gene_holdout_fraction}, {seen2_holdout_fraction}.")
    names = _conditions(perturbations, control)
    genes = sorted({g for p in names for g in targets_of(p)})
    if len(genes) < 2:
        raise ValueError(f"Need at least two target genes to hold one out; found {genes}.")
    rng = np.random.default_rng(seed)
    n_held = int(np.clip(round(gene_holdout_fraction * len(genes)), 1, len(genes) - 1))
    held = set(np.asarray(genes)[rng.permutation(len(genes))[:n_held]])
    touches_held = [p for p in names if held & set(targets_of(p))]
    both_seen = [p for p in names if len(targets_of(p)) == 2 and p not in touches_held]
    n_seen2 = round(seen2_holdout_fraction * len(both_seen))
    test = set(touches_held) | {both_seen[i] for i in rng.permutation(len(both_seen))[:n_seen2]}
    train = tuple(p for p in names if p not in test)
    # group by the genes that really train: a gene kept in only test perturbations counts as unseen
    seen = {g for p in train for g in targets_of(p)}
    groups = {p: _gears_group(p, seen) for p in sorted(test)}
    return PerturbationSplit(train=train, test=tuple(sorted(groups)), control=control, groups=groups, name="gears")


def _gears_group(label: str, seen: set[str]) -> str:
    genes = targets_of(label)
    n_seen = sum(g in seen for g in genes)
    return "single_unseen" if len(genes) == 1 else f"seen{n_seen}"


def split_additive(perturbations: Labels, double_holdout_fraction: float = 0.5, seed: int = 0,
                   control: str = CONTROL) -> PerturbationSplit:
    """Ahlmann-Eltze et al. (2025): every single trains, with a share of the doubles; the rest test.

    double_holdout_fraction: share of the doubles held out (rounded, at least one double).
    Test doubles are in group ``both_singles_seen`` when both their singles are measured (so an
    additive model can use them), else ``singles_missing``.
    """
    if not 0 < double_holdout_fraction < 1:
        raise ValueError(f"double_holdout_fraction must be in (0, 1), got {double_holdout_fraction}.")
    names = _conditions(perturbations, control)
    doubles = [p for p in names if len(targets_of(p)) == 2]
    if not doubles:
        raise ValueError("split_additive needs double perturbations ('A+B'); the labels have none.")
    n_test = max(1, round(double_holdout_fraction * len(doubles)))
    order = np.random.default_rng(seed).permutation(len(doubles))
    test = sorted(doubles[i] for i in order[:n_test])
    singles = set(names) - set(doubles)
    groups = {p: "both_singles_seen" if set(targets_of(p)) <= singles else "singles_missing" for p in test}
    train = tuple(p for p in names if p not in groups)
    return PerturbationSplit(train=train, test=tuple(test), control=control, groups=groups, name="additive")
