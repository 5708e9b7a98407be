"""Metrics against hand-computed cases."""
import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from genailab_core.metrics import calibration_summary, gene_calibration, knn_accuracy, knn_confusion, silhouette


def test_knn_accuracy_separable_and_random():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 100)
    centers = {"a": [0, 0], "b": [20, 0], "c": [0, 20]}
    emb = np.array([centers[l] for l in labels]) + rng.normal(size=(300, 2))
    assert knn_accuracy(emb, labels, k=15) == 1.0
    shuffled = rng.permutation(labels)
    assert knn_accuracy(emb, shuffled, k=15) < 0.5


def test_knn_confusion_counts_out_of_fold_errors():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 100)
    centers = {"a": [0, 0], "b": [20, 0], "c": [0, 20]}
    emb = np.array([centers[l] for l in labels]) + rng.normal(size=(300, 2))
    emb[:3] = [20, 0]                        # three "a" cells sit inside cluster b: predicted b
    table = knn_confusion(emb, labels, k=15)
    assert list(table.index) == list(table.columns) == ["a", "b", "c"]
    assert table.loc["a", "b"] == 3 and table.loc["a", "a"] == 97
    assert table.loc["b", "b"] == table.loc["c", "c"] == 100 and table.to_numpy().sum() == 300
    assert np.trace(table.to_numpy()) / 300 == pytest.approx(knn_accuracy(emb, labels, k=15), abs=0.01)


def test_silhouette_hand_case():
    # two points per cluster on a line: a = 0, 1; b = 10, 11
    emb = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1])
    # point 0: a = 1, b = mean(10, 11) = 10.5 -> s = 1 - 1/10.5
    s0, s1 = 1 - 1 / 10.5, 1 - 1 / 9.5
    assert silhouette(emb, labels) == pytest.approx(np.mean([s0, s1, s1, s0]))
    assert silhouette(emb, labels) == pytest.approx(silhouette_score(emb, labels))


def test_gene_calibration_hand_case():
    observed = np.array([[0, 2], [0, 4], [3, 0]])
    generated = np.array([[1, 2], [0, 4], [2, 0]])
    table = gene_calibration(observed, generated)
    assert table.mean_observed.tolist() == [1.0, 2.0]
    assert table.zero_rate_observed.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert table.zero_rate_model.tolist() == pytest.approx([1 / 3, 1 / 3])
    assert calibration_summary(table)["zero_rate_mae"] == pytest.approx((1 / 3 + 0) / 2)
    with pytest.raises(ValueError, match="same genes"):
        gene_calibration(observed, generated[:, :1])


