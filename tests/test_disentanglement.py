"""DCI (Eastwood & Williams 2018), MIG (Chen et al. 2018) and active units (Burda et al. 2016):
1 on a perfectly disentangled code, near 0 on a rotation of it that mixes every factor into every latent."""
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import hadamard
from scipy.stats import special_ortho_group

from genailab_core.metrics import active_units, dci, mig

N = 3000


def continuous_factors(n_factors=4, seed=0):
    """Independent factors of different shapes (well mixed: every combination occurs)."""
    rng = np.random.default_rng(seed)
    columns = [rng.normal(size=N), rng.uniform(-2, 2, size=N), rng.laplace(size=N), rng.normal(size=N),
               rng.uniform(-1, 1, size=N), rng.normal(size=N)]
    return np.column_stack(columns[:n_factors])


def mixed_factors(seed=0):
    """A cell type (4 classes), a continuous program and a batch (2 classes), independent."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"cell_type": pd.Categorical(rng.integers(4, size=N)),
                         "program": rng.normal(size=N),
                         "batch": pd.Categorical(rng.integers(2, size=N))})


@pytest.mark.parametrize("regressor", ["gbt", "lasso"])
def test_dci_is_one_on_a_perfect_code(regressor):
    factors = continuous_factors()
    codes = factors * np.array([2.0, -1.0, 0.5, 3.0]) + 1.0          # one latent per factor, rescaled
    scores = dci(codes, factors, regressor=regressor)
    assert scores["disentanglement"] > 0.95 and scores["completeness"] > 0.95
    assert scores["informativeness"] > 0.95
    assert np.argmax(scores["importance"], axis=0).tolist() == [0, 1, 2, 3]


def test_dci_is_near_zero_when_every_latent_mixes_every_factor():
    factors = continuous_factors()
    codes = factors @ (hadamard(4) / 2.0).T                             # an orthogonal, fully mixing rotation
    scores = dci(codes, factors, regressor="lasso")
    assert scores["disentanglement"] < 0.05 and scores["completeness"] < 0.05
    assert scores["informativeness"] > 0.95                             # the information is all there


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dci_and_mig_are_low_on_a_random_rotation(seed):
    factors = continuous_factors(6)
    codes = factors @ special_ortho_group.rvs(6, random_state=seed).T
    lasso, trees = dci(codes, factors, regressor="lasso"), dci(codes, factors, regressor="gbt")
    assert lasso["disentanglement"] < 0.25 and lasso["completeness"] < 0.25
    assert trees["disentanglement"] < 0.45 and trees["completeness"] < 0.45
    assert mig(codes, factors)["mig"] < 0.2


def test_mig_is_one_on_a_perfect_code_whatever_monotone_transform():
    factors = continuous_factors()
    codes = np.column_stack([np.exp(factors[:, 0]), -factors[:, 1], factors[:, 2] ** 3, factors[:, 3]])
    result = mig(codes, factors)
    assert result["mig"] > 0.95
    np.testing.assert_allclose(result["factor_entropy"], np.log(20), rtol=1e-3)   # 20 equal-frequency bins


def test_discrete_factors_perfect_and_mixed():
    factors = mixed_factors()
    perfect = np.column_stack([factors.cell_type.cat.codes, factors.program, factors.batch.cat.codes]).astype(float)
    assert dci(perfect, factors)["disentanglement"] > 0.95
    assert mig(perfect, factors)["mig"] > 0.95
    rotated = perfect @ special_ortho_group.rvs(3, random_state=0).T
    assert mig(rotated, factors)["mig"] < 0.3
    assert dci(rotated, factors)["disentanglement"] < 0.5


def test_an_unused_noise_latent_keeps_disentanglement_and_completeness_high():
    """An unused latent that is pure noise gets almost no importance, so it lowers neither score: DCI's
    disentanglement weights that latent by its (small) importance, and completeness looks at where each
    factor's importance goes, which is not to the noise."""
    rng = np.random.default_rng(0)
    factors = continuous_factors(3)
    codes = np.column_stack([factors, rng.normal(size=N)])
    scores = dci(codes, factors, regressor="lasso")
    assert scores["disentanglement"] > 0.95 and scores["completeness"] > 0.95
    assert scores["importance"][3].sum() < 0.05 * scores["importance"].sum()


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    rng = np.random.default_rng(0)
    means = np.column_stack([rng.normal(size=500), 0.05 * rng.normal(size=500), np.zeros(500),
                             rng.normal(0, 0.2, size=500)])               # variances ~1, 0.0025, 0, 0.04
    count, variances = active_units(means)
    assert count == 2 and variances.shape == (4,)
    assert active_units(means, threshold=0.001)[0] == 3


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="cells"):
        dci(np.zeros((10, 2)), np.zeros((11, 1)))
    with pytest.raises(ValueError, match="flags"):
        mig(np.zeros((10, 2)), np.zeros((10, 2)), discrete=[True])
