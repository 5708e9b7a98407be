"""Perturbation metrics against hand-computed cases."""
import numpy as np
import pytest

from genailab_core import metrics as M

CTRL = np.array([1.0, 2.0, 3.0, 4.0])
TRUTH = np.array([2.0, 2.0, 1.0, 4.0])          # change (1, 0, -2, 0)
PRED = np.array([1.5, 3.0, 2.0, 4.0])           # change (0.5, 1, -1, 0)


def test_top_expressed_genes():
    assert M.top_expressed_genes(CTRL, n=2).tolist() == [3, 2]
    assert M.top_expressed_genes(CTRL, n=1000).tolist() == [3, 2, 1, 0]


def test_l2_distance_hand_case():
    # differences (-0.5, 1, 1, 0): sqrt(0.25 + 1 + 1) = 1.5
    assert M.l2_distance(PRED, TRUTH) == pytest.approx(1.5)
    assert M.l2_distance(PRED, TRUTH, genes=[0, 3]) == pytest.approx(0.5)


def test_pearson_delta_hand_case():
    a, b = np.array([0.5, 1, -1, 0]), np.array([1.0, 0, -2, 0])
    a_c, b_c = a - a.mean(), b - b.mean()
    expected = (a_c @ b_c) / np.sqrt((a_c @ a_c) * (b_c @ b_c))
    assert M.pearson_delta(PRED, TRUTH, CTRL) == pytest.approx(expected)
    assert M.pearson_delta(TRUTH, TRUTH, CTRL) == pytest.approx(1.0)
    assert M.pearson_delta(CTRL, TRUTH, CTRL) == 0.0            # no predicted change: 0 by convention
    assert np.isnan(M.pearson_delta(PRED, CTRL, CTRL))           # no observed change: undefined


def test_mse_normalized_hand_case():
    # MSE(pred, truth) = (0.25 + 1 + 1 + 0) / 4; MSE(ctrl, truth) = (1 + 0 + 4 + 0) / 4
    assert M.mse_normalized(PRED, TRUTH, CTRL) == pytest.approx(2.25 / 5)
    assert M.mse_normalized(CTRL, TRUTH, CTRL) == pytest.approx(1.0)
    assert M.mse_normalized(TRUTH, TRUTH, CTRL, genes=[0, 2]) == 0.0


def test_direction_accuracy_hand_case():
    # signs of change: pred (+, +, -, 0), truth (+, 0, -, 0): genes 0 and 2 match -> 2 / 4
    assert M.direction_accuracy(PRED, TRUTH, CTRL) == pytest.approx(0.5)
    assert M.direction_accuracy(PRED, TRUTH, CTRL, genes=[0, 2]) == 1.0


def test_synergy_score_hand_case():
    additive = np.array([2.0, 3.0, 3.0, 4.0])                    # change (1, 1, 0, 0)
    assert M.synergy_score(additive, additive, CTRL) == pytest.approx(1.0)
    assert M.synergy_score(CTRL + 2 * (additive - CTRL), additive, CTRL) == pytest.approx(2.0)
    assert M.synergy_score(CTRL, additive, CTRL) == 0.0
    # change (1, 0, -2, 0) projected on (1, 1, 0, 0): 1 / 2
    assert M.synergy_score(TRUTH, additive, CTRL) == pytest.approx(0.5)


def test_synergy_detection_hand_case():
    labels = np.array([True, False, True, False])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # ranking T F T F: precision at the two positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2; AUROC: 3 of 4 pairs
    out = M.synergy_detection(scores, labels)
    assert out["auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["auroc"] == pytest.approx(0.75)
    constant = M.synergy_detection(np.ones(4), labels)
    assert constant["auroc"] == pytest.approx(0.5) and constant["auprc"] == pytest.approx(0.5)
    assert np.isnan(M.synergy_detection(scores, np.ones(4, bool))["auprc"])


def test_discrimination_rank_hand_case():
    truths = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    perfect = M.discrimination_rank(truths, truths)
    assert perfect.tolist() == [0.0, 0.0, 0.0]
    swapped = truths[[1, 0, 2]]                                   # predictions 0 and 1 exchanged
    # truth 0: own prediction (10, 0) at 10; others at 0 and 10 -> 1 closer + 0.5 tie = 1.5 of 2
    # truth 1 = (10, 0): own prediction (0, 0) at 10; others at 0 (closer) and 14.1 -> 1 of 2
    assert M.discrimination_rank(swapped, truths).tolist() == [0.75, 0.5, 0.0]
    same = np.zeros((3, 2))
    assert M.discrimination_rank(same, truths).tolist() == [0.5, 0.5, 0.5]


def test_discrimination_rank_hand_case_with_gene_subset():
    # on genes [0, 1] (gene 2 ignored): truths t0 = (0, 0), t1 = (3, 4); predictions p0 = (3, 0), p1 = (0, 0)
    truths = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    predictions = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 100.0]])    # on all genes p1 is far from both
    # truth 0: own p0 at 3, other p1 at 0 (closer) -> 1 of 1; truth 1: own p1 at 5, other p0 at 4 (closer) -> 1
    assert M.discrimination_rank(predictions, truths, genes=[0, 1]).tolist() == [1.0, 1.0]
    # swap the predictions: each truth's own prediction is now the closer one -> 0
    assert M.discrimination_rank(predictions[[1, 0]], truths, genes=[0, 1]).tolist() == [0.0, 0.0]
    assert M.discrimination_rank(predictions, truths).tolist() == [0.0, 1.0]   # gene 2 counted


def test_discrimination_rank_equals_the_pairwise_definition():
    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(7, 30)), rng.normal(size=(7, 30))
    pred[3] = pred[5]                                             # a tie between two predictions
    dist = np.sqrt(((true[:, None, :] - pred[None, :, :]) ** 2).sum(-1))
    own = np.diag(dist)[:, None]
    expected = ((dist < own).sum(1) + 0.5 * ((dist == own).sum(1) - 1)) / 6
    np.testing.assert_allclose(M.discrimination_rank(pred, true), expected)


def test_pearson_delta_on_a_gene_set():
    # on genes [0, 2]: changes (0.5, -1) and (1, -2) are perfectly correlated
    assert M.pearson_delta(PRED, TRUTH, CTRL, genes=[0, 2]) == pytest.approx(1.0)
    top = M.top_expressed_genes(CTRL, n=3)                        # genes 3, 2, 1: changes (0, -1, 1), (0, -2, 0)
    a, b = np.array([0.0, -1, 1]), np.array([0.0, -2, 0])
    assert M.pearson_delta(PRED, TRUTH, CTRL, genes=top) == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_perturbation_metrics_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        M.pearson_delta(PRED, TRUTH[:3], CTRL)
    with pytest.raises(ValueError, match="perturbations, genes"):
        M.discrimination_rank(PRED, TRUTH)


def test_discrimination_rank_within_groups():
    # group "s": small truths; group "d": large truths. A control-like prediction (0, 0) for both singles.
    truths = np.array([[1.0, 0.0], [0.0, 1.0], [10.0, 0.0], [0.0, 10.0]])
    pred = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    groups = np.array(["s", "s", "d", "d"])
    # pooled: truth 0 = (1, 0): own (0, 0) at 1; the other single's (0, 0) ties; (10, 0) at 9, (0, 10) at 10.05
    # -> 0.5 of 3; the doubles' predictions are far from a single's truth, so the control looks discriminative
    np.testing.assert_allclose(M.discrimination_rank(pred, truths), [0.5 / 3, 0.5 / 3, 0.0, 0.0])
    # within groups: the two singles' identical predictions tie -> chance 0.5; the doubles are exact -> 0
    np.testing.assert_allclose(M.discrimination_rank(pred, truths, groups=groups), [0.5, 0.5, 0.0, 0.0])
    lone = M.discrimination_rank(pred, truths, groups=np.array(["s", "s", "d", "x"]))
    assert lone[:2].tolist() == [0.5, 0.5] and np.isnan(lone[2:]).all()     # a group of one has no rank
    with pytest.raises(ValueError, match="groups"):
        M.discrimination_rank(pred, truths, groups=groups[:3])
