"""Cell and perturbation splits: disjoint, complete, stratified, leak-free, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genailab_core.data import split_cells, split_perturbations


def test_split_cells_partition_and_sizes():
    split = split_cells(1000, val_fraction=0.1, test_fraction=0.2, seed=0)
    parts = [split.train, split.val, split.test]
    assert [len(p) for p in parts] == [700, 100, 200]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert split.n_cells == 1000


def test_split_cells_reproducible_and_seed_dependent():
    a, b, c = (split_cells(500, 0.2, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.val, b.val) and not np.array_equal(a.val, c.val)
    assert len(a.test) == 0


def test_split_cells_stratified_keeps_shares():
    labels = np.repeat(["a", "b", "c"], [600, 300, 100])
    split = split_cells(len(labels), val_fraction=0.2, test_fraction=0.1, seed=1, stratify=labels)
    for part, share in [(split.val, 0.2), (split.test, 0.1)]:
        counts = pd.Series(labels[part]).value_counts()
        for label, total in [("a", 600), ("b", 300), ("c", 100)]:
            assert abs(counts[label] - share * total) <= 1


def test_split_cells_bad_input():
    with pytest.raises(ValueError, match="sum to < 1"):
        split_cells(10, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="one label per cell"):
        split_cells(10, stratify=["a"] * 9)


def test_split_perturbations_holds_out_whole_perturbations(norman):
    labels = norman.obs["perturbation"]
    split = split_perturbations(labels, holdout_fraction=0.2, seed=0)
    assert "control" not in split.test and "control" not in split.train
    assert len(split.test) == round(0.2 * 33) == 7
    assert set(split.train).isdisjoint(split.test)
    assert set(split.train) | set(split.test) == set(labels.cat.categories) - {"control"}
    cells = split.cell_split(labels)
    train_labels = set(labels.iloc[cells.train])
    test_labels = set(labels.iloc[cells.test])
    assert train_labels.isdisjoint(test_labels)  # no perturbation has cells on both sides
    assert test_labels == set(split.test) and "control" in train_labels
    assert len(cells.train) + len(cells.test) == norman.n_obs


def test_split_perturbations_reproducible():
    names = [f"G{i}" for i in range(20)] + ["control"]
    a = split_perturbations(names, 0.25, seed=5)
    b = split_perturbations(list(reversed(names)), 0.25, seed=5)
    c = split_perturbations(names, 0.25, seed=6)
    assert a == b and a.test != c.test and len(a.test) == 5


def test_split_perturbations_bounds_and_errors():
    assert len(split_perturbations(["control", "A", "B"], holdout_fraction=0.01).test) == 1
    assert len(split_perturbations(["control", "A", "B"], holdout_fraction=0.99).train) == 1
    with pytest.raises(ValueError, match="at least two"):
        split_perturbations(["control", "A"])
    split = split_perturbations(["control", "A", "B", "C"], 0.3, seed=0)
    with pytest.raises(ValueError, match="neither part"):
        split.cell_split(["A", "Z"])
