"""Collapse diagnostics and probes of embeddings: effective rank against hand-computed cases, spectra,
probes on separable and random labels, the relative distance of a view."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from genailab_core.metrics.embedding import (effective_rank, majority_accuracy, per_dimension_std, probe_accuracy,
                                             relative_view_distance, singular_values)


def isotropic_rank(k, d=16, n=4000, seed=0):
    """n cells in d dims whose centred matrix has exactly k equal singular values."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))                         # (n, k) orthonormal columns
    q -= q.mean(0)
    q, _ = np.linalg.qr(q)                                                     # still centred, orthonormal
    basis, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return 5.0 * q @ basis.T + rng.standard_normal(d)                           # plus an offset: centring removes it


@pytest.mark.parametrize("k", [1, 3, 8, 16])
def test_effective_rank_of_k_equal_directions_is_k(k):
    assert effective_rank(isotropic_rank(k)) == pytest.approx(k, rel=1e-6)


def test_effective_rank_hand_computed_spectrum():
    z = np.diag([3.0, 1.0, 0.0])
    z = np.vstack([z, -z])                                                    # centred, singular values sqrt2*(3, 1, 0)
    p = np.array([0.75, 0.25])
    assert effective_rank(z) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    np.testing.assert_allclose(singular_values(z), np.sqrt(2) * np.array([3.0, 1.0, 0.0]), atol=1e-12)


def test_collapsed_embedding():
    z = np.ones((50, 8))
    assert effective_rank(z) == 1.0 and (per_dimension_std(z) == 0).all()
    rng = np.random.default_rng(0)
    u = rng.standard_normal((500, 1))
    assert effective_rank(u * np.arange(1, 9)) == pytest.approx(1.0)          # dimensional collapse: one direction
    np.testing.assert_allclose(per_dimension_std(u * np.arange(1, 9)), u.std() * np.arange(1, 9))


def clusters(n=300, seed=0, shift=8.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 5)) + shift * np.eye(5)[y], y


@pytest.mark.parametrize("kind", ["knn", "linear"])
def test_probes_separable_and_random_labels(kind):
    z, y = clusters()
    zt, yt = clusters(seed=1)
    assert probe_accuracy(z, y, zt, yt, kind=kind) == 1.0
    rng = np.random.default_rng(2)
    random_labels = rng.integers(0, 4, len(z))
    acc = probe_accuracy(z, random_labels, zt, rng.integers(0, 4, len(zt)), kind=kind)
    assert abs(acc - 0.25) < 0.1                                               # chance


def test_probes_agree_with_scikit_learn():
    z, y = clusters(shift=1.0)
    zt, yt = clusters(seed=1, shift=1.0)
    ours = probe_accuracy(z, y, zt, yt, kind="knn", k=7)
    assert ours == KNeighborsClassifier(7).fit(z, y).score(zt, yt)
    linear = probe_accuracy(z, y, zt, yt, kind="linear")
    assert abs(linear - LogisticRegression(max_iter=2000).fit(z, y).score(zt, yt)) < 0.05


def test_majority_accuracy():
    assert majority_accuracy(["a", "a", "b"], ["a", "b", "b", "b"]) == 0.25


def test_relative_view_distance():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1000, 4))
    assert relative_view_distance(z, z) == 0.0
    other = rng.standard_normal((1000, 4))                                     # unrelated "views": about 1
    assert relative_view_distance(z, other) == pytest.approx(1.0, abs=0.08)
    assert relative_view_distance(100 * z, 100 * (z + 0.1)) == pytest.approx(relative_view_distance(z, z + 0.1))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="kind"):
        probe_accuracy(np.zeros((3, 2)), [0, 1, 0], np.zeros((3, 2)), [0, 1, 0], kind="svm")
    with pytest.raises(ValueError, match="shapes disagree"):
        probe_accuracy(np.zeros((3, 2)), [0, 1], np.zeros((3, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="same shape"):
        relative_view_distance(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="collapsed"):
        relative_view_distance(np.ones((5, 2)), np.ones((5, 2)))
