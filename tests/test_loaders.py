"""CountBatches: shapes, rows densified per batch, condition codes, epoch coverage and reproducibility."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genailab_core.data import CountBatches, simulate_counts


@pytest.fixture(scope="module")
def small():
    return simulate_counts(n_cells=103, n_genes=17, n_cell_types=3, n_batches=2, n_programs=1, seed=0)


def test_batch_shapes_and_partial_last_batch(small):
    batches = CountBatches(small, batch_size=25, condition_keys=("cell_type", "batch"))
    assert len(batches) == 5 and batches.n_cells == 103 and batches.n_genes == 17
    shapes = [b["x"].shape for b in batches]
    assert shapes == [(25, 17)] * 4 + [(3, 17)]
    batch = next(iter(batches))
    assert batch["x"].dtype == torch.float32 and "library" not in batch    # models use x.sum(-1)
    assert batch["index"].dtype == torch.long and batch["cell_type"].dtype == torch.long
    dropped = CountBatches(small, batch_size=25, drop_last=True)
    assert len(dropped) == 4 and [b["x"].shape[0] for b in dropped] == [25] * 4


def test_epoch_covers_every_cell_once_with_matching_rows(small):
    batches = CountBatches(small, batch_size=10, condition_keys=("cell_type",), seed=3)
    seen = []
    dense = small.X.toarray()
    codes = small.obs["cell_type"].cat.codes.to_numpy()
    for batch in batches:
        index = batch["index"].numpy()
        seen.append(index)
        np.testing.assert_array_equal(batch["x"].numpy(), dense[index])
        np.testing.assert_array_equal(batch["cell_type"].numpy(), codes[index])
    order = np.concatenate(seen)
    assert np.array_equal(np.sort(order), np.arange(103)) and not np.array_equal(order, np.arange(103))
    assert list(batches.categories["cell_type"]) == ["type_0", "type_1", "type_2"]


def _epoch_order(batches: CountBatches) -> np.ndarray:
    return np.concatenate([b["index"].numpy() for b in batches])


def test_shuffling_is_seeded_per_epoch(small):
    a, b = CountBatches(small, batch_size=16, seed=7), CountBatches(small, batch_size=16, seed=7)
    first_a, second_a = _epoch_order(a), _epoch_order(a)
    assert np.array_equal(first_a, _epoch_order(b))
    assert not np.array_equal(first_a, second_a)  # a new permutation each epoch
    expected = torch.randperm(103, generator=torch.Generator().manual_seed(7 + 1)).numpy()
    assert np.array_equal(second_a, expected)  # epoch e uses seed + e
    a.set_epoch(0)
    assert np.array_equal(_epoch_order(a), first_a)
    unshuffled = CountBatches(small, batch_size=16, shuffle=False)
    assert np.array_equal(_epoch_order(unshuffled), np.arange(103))


def test_dense_x_layer_and_row_sum_library():
    counts = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0]], dtype=np.float32)
    adata = ad.AnnData(
        X=np.log1p(counts),
        obs=pd.DataFrame({"group": ["x", "y", "x"]}, index=["a", "b", "c"]),
        layers={"counts": sp.csr_matrix(counts)},
    )
    batches = CountBatches(adata, batch_size=8, shuffle=False, layer="counts", condition_keys=("group",))
    batch = next(iter(batches))
    np.testing.assert_array_equal(batch["x"].numpy(), counts)
    np.testing.assert_array_equal(batch["group"].numpy(), [0, 1, 0])
    assert list(batches.categories["group"]) == ["x", "y"]
    dense = next(iter(CountBatches(adata, batch_size=8, shuffle=False)))
    np.testing.assert_allclose(dense["x"].numpy(), np.log1p(counts))


def test_errors_name_the_problem(small):
    with pytest.raises(KeyError, match="no layer 'counts'"):
        CountBatches(small, layer="counts")
    with pytest.raises(KeyError, match="no column 'donor'"):
        CountBatches(small, condition_keys=("donor",))
    missing = small.copy()
    missing.obs["label"] = pd.Categorical(["a"] * 100 + [np.nan] * 3)
    with pytest.raises(ValueError, match="3 missing values"):
        CountBatches(missing, condition_keys=("label",))


def test_the_matrix_stays_sparse_and_batches_are_densified_on_the_fly(small):
    batches = CountBatches(small, batch_size=10, seed=1)
    assert sp.issparse(batches.matrix) and batches.matrix.nnz == small.X.nnz   # no dense copy of the data
    batch = next(iter(batches))
    np.testing.assert_array_equal(batch["x"].numpy(), small.X[batch["index"].numpy()].toarray())


def test_norman_batches_match_their_rows(norman):
    batches = CountBatches(norman, batch_size=512, condition_keys=("perturbation",), seed=0)
    assert len(batches) == 7
    batch = next(iter(batches))
    index = batch["index"].numpy()
    np.testing.assert_array_equal(batch["x"].numpy(), norman.X[index].toarray())
    labels = batches.categories["perturbation"][batch["perturbation"].numpy()]
    assert list(labels) == list(norman.obs["perturbation"].iloc[index])


def test_population_batches_pass_once_over_x0_and_balance_x1():
    import torch
    from genailab_core.data import PopulationBatches

    x0 = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)          # row i = (i, i)
    x1 = -np.arange(1, 5, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)       # 4 rows
    loader = PopulationBatches(x0, x1, batch_size=4, seed=3)
    epoch = list(loader)
    assert len(epoch) == len(loader) == 3
    seen0 = torch.cat([b["x"][:, 0] for b in epoch]).numpy()
    assert sorted(seen0) == list(range(10))                                            # every x0 once
    seen1 = torch.cat([b["x1"][:, 0] for b in epoch]).numpy()
    counts = np.unique(seen1, return_counts=True)[1]
    assert len(seen1) == 10 and counts.max() - counts.min() <= 1                     # x1 cycled evenly
    assert all(len(set(b["x1"][:, 0].tolist())) == len(b["x1"]) for b in epoch)      # no repeat in a batch
    loader.set_epoch(0)
    again = list(loader)
    assert all(torch.equal(a["x"], b["x"]) and torch.equal(a["x1"], b["x1"]) for a, b in zip(epoch, again))
    with pytest.raises(ValueError, match="same d"):
        PopulationBatches(x0, x1[:, :1])
    couples = PopulationBatches(x0, -x0, batch_size=4, seed=1, paired=True)             # row i with row i
    assert all(torch.equal(b["x1"], -b["x"]) for b in couples)
    with pytest.raises(ValueError, match="as many rows"):
        PopulationBatches(x0, x1, paired=True)
