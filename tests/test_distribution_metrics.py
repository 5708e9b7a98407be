"""Distribution metrics against closed forms, scipy, and hand-computed cases; the real-data floor."""
import math

import numpy as np
import pytest
from scipy import linalg, stats

from genailab_core.metrics import (classifier_auc, compare_to_real, energy_distance, gene_moment_errors,
                                   knn_precision_recall, mmd_rbf, pca_of_real, real_data_floor, wasserstein)


def gaussian(n, mean, cov, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def test_w2_between_gaussians_matches_the_bures_formula():
    m1, m2 = np.array([0.0, 0.0]), np.array([1.0, -0.5])
    s1, s2 = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.6, -0.2], [-0.2, 1.2]])
    root = linalg.sqrtm(s1)
    exact = math.sqrt(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(root @ s2 @ root)).real)
    ours = wasserstein(gaussian(1500, m1, s1, 0), gaussian(1500, m2, s2, 1))
    # the empirical W2 between samples of n = 1500 in 2-D is off by its sampling noise, ~0.05
    assert abs(ours - exact) < 0.1, (ours, exact)


def test_w1_in_one_dimension_equals_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 1)), rng.gamma(2.0, size=(200, 1))
    assert wasserstein(x, y, p=1) == pytest.approx(stats.wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-9)


def test_energy_distance_of_1d_gaussians_matches_closed_form_and_scipy():
    (m1, s1), (m2, s2) = (0.0, 1.0), (1.0, 2.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(m1, s1, size=(3000, 1)), rng.normal(m2, s2, size=(3000, 1))
    d, sigma = m1 - m2, math.hypot(s1, s2)
    e_xy = sigma * math.sqrt(2 / math.pi) * math.exp(-d ** 2 / (2 * sigma ** 2)) + d * (1 - 2 * stats.norm.cdf(-d / sigma))
    exact = 2 * e_xy - 2 * s1 / math.sqrt(math.pi) - 2 * s2 / math.sqrt(math.pi)
    ours = energy_distance(x, y)
    assert ours == pytest.approx(exact, abs=0.1)                        # sampling error at n = 3000
    assert ours == pytest.approx(stats.energy_distance(x[:, 0], y[:, 0]) ** 2, rel=1e-9)


def test_mmd_hand_case_one_bandwidth():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [3.0]])
    k = lambda d2: math.exp(-d2 / 2)                                     # noqa: E731, s = 1
    within_x, within_y = k(1.0), k(9.0)                                  # the i != j pairs, averaged
    between = (k(0.0) + k(9.0) + k(1.0) + k(4.0)) / 4
    assert mmd_rbf(x, y, bandwidths=[1.0]) == pytest.approx(within_x + within_y - 2 * between)


def test_mmd_v_statistic_hand_case_includes_the_diagonal():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [3.0]])
    k = lambda d2: math.exp(-d2 / 2)                                     # noqa: E731, s = 1
    within_x, within_y = (2 * k(0.0) + 2 * k(1.0)) / 4, (2 * k(0.0) + 2 * k(9.0)) / 4
    between = (k(0.0) + k(9.0) + k(1.0) + k(4.0)) / 4
    assert mmd_rbf(x, y, bandwidths=[1.0], unbiased=False) == pytest.approx(within_x + within_y - 2 * between)
    same = mmd_rbf(gaussian(300, [0, 0], np.eye(2), 0), gaussian(300, [0, 0], np.eye(2), 1), unbiased=False)
    assert same > 0                                                      # the V-statistic's finite-sample bias


def test_forest_auc_sees_a_difference_of_shape_that_logistic_cannot():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 600)
    ring = np.c_[np.cos(angle), np.sin(angle)] * np.sqrt(2)                # mean 0, covariance I, like N(0, I)
    blob = rng.normal(size=(600, 2))
    assert abs(classifier_auc(blob, ring) - 0.5) < 0.08                  # no linear direction separates them
    assert classifier_auc(blob, ring, model="forest") > 0.8
    assert abs(classifier_auc(blob, rng.normal(size=(600, 2)), model="forest") - 0.5) < 0.08
    with pytest.raises(ValueError, match="logistic"):
        classifier_auc(blob, ring, model="svm")


def test_mmd_is_unbiased_near_zero_for_one_distribution_and_positive_for_a_shift():
    same = [mmd_rbf(gaussian(300, [0, 0], np.eye(2), s), gaussian(300, [0, 0], np.eye(2), s + 100)) for s in range(5)]
    assert abs(np.mean(same)) < 3e-3 and min(same) < 0 < max(same)       # unbiased: straddles zero
    shifted = mmd_rbf(gaussian(300, [0, 0], np.eye(2), 0), gaussian(300, [1, 0], np.eye(2), 1))
    assert shifted > 10 * max(np.abs(same))


def test_classifier_auc_is_chance_for_one_distribution_and_high_for_a_shift():
    one = classifier_auc(gaussian(400, [0, 0, 0], np.eye(3), 0), gaussian(400, [0, 0, 0], np.eye(3), 1))
    assert abs(one - 0.5) < 0.08
    assert classifier_auc(gaussian(400, [0, 0, 0], np.eye(3), 0), gaussian(400, [3, 0, 0], np.eye(3), 1)) > 0.95


def test_knn_precision_recall_hand_case():
    real = np.array([[i, j] for i in range(5) for j in range(5)], dtype=float)   # unit grid: k=4 radius is 1
    inside, outside = real[:6] + 0.2, real[:6] + 100.0
    precision, recall = knn_precision_recall(real, np.concatenate([inside, outside]), k=4)
    assert precision == 0.5
    assert knn_precision_recall(real, real, k=4) == (1.0, 1.0)


def test_gene_moment_errors_are_zero_for_identical_counts_and_see_a_wrong_mean():
    counts = np.random.default_rng(0).poisson(2.0, size=(200, 30)).astype(float)
    same = gene_moment_errors(counts, counts)
    assert same["mean_log1p_mae"] == 0 and same["zero_rate_mae"] == 0 and same["mean_log_r"] == pytest.approx(1)
    doubled = gene_moment_errors(counts, 2 * counts)
    assert doubled["mean_log1p_mae"] == pytest.approx(np.mean(np.log1p(4.0 * 0 + 2 * counts.mean(0))
                                                              - np.log1p(counts.mean(0))))


def test_real_data_floor_uses_disjoint_halves_and_is_near_zero_on_one_distribution():
    real = gaussian(600, [0, 0], np.eye(2), 0)

    def disjoint(a, b):
        rows_a, rows_b = {tuple(r) for r in a}, {tuple(r) for r in b}
        assert not rows_a & rows_b and len(a) == len(b) == 300
        return 0.0

    assert real_data_floor(disjoint, real) == (0.0, 0.0)
    floor, sd = real_data_floor(mmd_rbf, real, n_splits=4)
    assert abs(floor) < 5e-3 and sd > 0


def test_compare_to_real_puts_a_shifted_generator_above_its_floor():
    real = gaussian(600, [0, 0], np.eye(2), 0)
    good, shifted = gaussian(400, [0, 0], np.eye(2), 1), gaussian(400, [1.5, 0], np.eye(2), 2)
    metrics = {"energy": energy_distance, "auc": classifier_auc}
    table_good, table_bad = compare_to_real(good, real, metrics), compare_to_real(shifted, real, metrics)
    assert set(table_good.columns) == {"generated vs real", "generated s.d.", "real-data floor", "floor s.d."}
    assert table_good.loc["energy", "generated vs real"] < table_good.loc["energy", "real-data floor"] + 0.05
    assert table_bad.loc["auc", "generated vs real"] > 0.8 > table_bad.loc["auc", "real-data floor"]


def test_pcs_are_fitted_on_the_real_cells():
    real, other = gaussian(200, [0, 0, 0], np.diag([5.0, 1.0, 0.1]), 0), gaussian(100, [0, 0, 0], np.eye(3), 1)
    real_pcs, other_pcs = pca_of_real(real, other, n_components=2)
    assert real_pcs.shape == (200, 2) and other_pcs.shape == (100, 2)
    assert real_pcs[:, 0].var() > 3 * real_pcs[:, 1].var()


@pytest.mark.parametrize("metric", [mmd_rbf, energy_distance, wasserstein, classifier_auc, knn_precision_recall,
                                    gene_moment_errors])
def test_arrays_of_different_genes_are_a_clear_error(metric):
    with pytest.raises(ValueError, match="same genes"):
        metric(np.ones((10, 5)), np.ones((10, 4)))


def test_other_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="at least 2 cells"):
        energy_distance(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mmd_rbf(np.full((4, 2), np.nan), np.ones((4, 2)))
    with pytest.raises(ValueError, match="subsample"):
        wasserstein(np.zeros((30, 2)), np.zeros((30, 2)), max_cells=20)
