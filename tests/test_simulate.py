"""Simulators: NB moments, ground truth consistency, interaction types, trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from genailab_core.data import InteractionMix, simulate_counts, simulate_perturbations, simulate_trajectory
from genailab_core.data import simulate_core
from genailab_core.data.simulate import INTERACTION_TYPES, sample_negative_binomial


def _softmax(eta: np.ndarray) -> np.ndarray:
    e = np.exp(eta - eta.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_gamma_poisson_sampler_matches_scipy_nbinom_moments():
    """NB(mu, theta) = scipy nbinom(n=theta, p=theta/(theta+mu)): E = mu, Var = mu + mu^2/theta."""
    rng = np.random.default_rng(0)
    mu = np.array([0.2, 3.0, 40.0])
    theta = np.array([0.5, 2.0, 10.0])
    n = 200_000
    x = sample_negative_binomial(rng, np.broadcast_to(mu, (n, 3)), theta)
    reference = stats.nbinom(n=theta, p=theta / (theta + mu))
    np.testing.assert_allclose(reference.mean(), mu)
    np.testing.assert_allclose(reference.var(), mu + mu**2 / theta)
    standard_error = np.sqrt(reference.var() / n)
    assert np.all(np.abs(x.mean(axis=0) - mu) < 5 * standard_error)
    fourth_central = (reference.stats(moments="k") + 3) * reference.var() ** 2      # kurtosis is the excess
    variance_error = np.sqrt((fourth_central - reference.var() ** 2) / n)
    assert np.all(np.abs(x.var(axis=0, ddof=1) - reference.var()) < 5 * variance_error)
    # the zero probability too: P(0) = (theta / (theta + mu))^theta
    np.testing.assert_allclose((x == 0).mean(axis=0), reference.pmf(0), atol=5e-3)


def test_simulated_counts_have_nb_moments():
    """One type, one batch, no programs, fixed library: every cell has mu_g = l * rho_g."""
    theta = 3.0
    adata = simulate_counts(
        n_cells=20_000,
        n_genes=40,
        n_cell_types=1,
        n_batches=1,
        n_programs=0,
        dispersion=theta,
        library_log_sd=1e-12,
        library_log_mean=np.log(400.0),
        batch_effect_sd=0.0,
        seed=1,
    )
    truth = adata.uns["ground_truth"]
    mu = 400.0 * np.exp(truth["type_log_profiles"][0])
    x = adata.X.toarray().astype(np.float64)
    variance = mu + mu**2 / theta
    assert np.all(np.abs(x.mean(axis=0) - mu) < 5 * np.sqrt(variance / x.shape[0]))
    ratio = x.var(axis=0)[mu > 1] / variance[mu > 1]
    assert abs(ratio.mean() - 1) < 0.03 and np.all(np.abs(ratio - 1) < 0.15)


def test_simulate_counts_ground_truth_reconstructs_means():
    adata = simulate_counts(
        n_cells=300, n_genes=120, n_cell_types=3, n_batches=2, n_programs=2, seed=7, store_means=True
    )
    truth, obs = adata.uns["ground_truth"], adata.obs
    assert truth["type_effects"].shape == (3, 120) and truth["batch_effects"].shape == (2, 120)
    assert truth["program_loadings"].shape == (2, 120) and truth["dispersion"].shape == (120,)
    eta = (
        truth["gene_baseline"]
        + truth["type_effects"][obs["cell_type"].cat.codes.to_numpy()]
        + truth["batch_effects"][obs["batch"].cat.codes.to_numpy()]
        + obs[["program_0", "program_1"]].to_numpy() @ truth["program_loadings"]
    )
    expected = obs["size_factor"].to_numpy()[:, None] * _softmax(eta)
    np.testing.assert_allclose(adata.layers["mu"], expected, rtol=1e-5)
    np.testing.assert_allclose(np.exp(truth["type_log_profiles"]).sum(axis=1), 1.0)
    # pooled E[x] = mu check over all entries: z-score of the total deviation
    x = adata.X.toarray()
    mu = expected
    z = (x - mu).sum() / np.sqrt((mu + mu**2 / truth["dispersion"]).sum())
    assert abs(z) < 5
    np.testing.assert_array_equal(obs["library_size"], x.sum(axis=1))


def test_simulate_counts_reproducible_and_integer():
    a = simulate_counts(n_cells=200, n_genes=50, seed=11)
    b = simulate_counts(n_cells=200, n_genes=50, seed=11)
    c = simulate_counts(n_cells=200, n_genes=50, seed=12)
    assert (a.X != b.X).nnz == 0 and (a.X != c.X).nnz > 0
    assert np.array_equal(a.X.data, np.round(a.X.data)) and a.X.dtype == np.float32
    assert set(a.obs["cell_type"].cat.categories) == {f"type_{i}" for i in range(5)}


def test_sampler_is_seeded_by_the_generator_and_leaves_torch_state_alone():
    """Same numpy Generator state, same counts; torch's global random stream is not consumed."""
    mu = np.full((50, 4), 3.0, dtype=np.float32)
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    a = sample_negative_binomial(np.random.default_rng(1), mu, 2.0)
    assert torch.equal(torch.rand(3), expected_next)
    b = sample_negative_binomial(np.random.default_rng(1), mu, 2.0)
    c = sample_negative_binomial(np.random.default_rng(2), mu, 2.0)
    assert a.dtype == np.int64 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_simulate_counts_draws_every_cell_in_one_float32_call(monkeypatch):
    """The counts come from one vectorized NB draw over the whole (cells, genes) float32 mean matrix
    (no per-cell or per-gene loop, no float64 copy), and X is stored sparse."""
    calls = []

    def recording_sampler(rng, mu, theta):
        calls.append((mu.shape, mu.dtype, np.shape(theta)))
        return sample_negative_binomial(rng, mu, theta)

    monkeypatch.setattr(simulate_core, "sample_negative_binomial", recording_sampler)
    adata = simulate_counts(n_cells=500, n_genes=300, seed=0)
    assert calls == [((500, 300), np.float32, (300,))]
    assert adata.shape == (500, 300) and adata.X.format == "csr" and adata.X.dtype == np.float32


def test_interaction_mix_counts_and_validation():
    mix = InteractionMix(additive=0.4, synergy=0.15, suppression=0.15, epistasis=0.15, neomorphic=0.15)
    assert mix.counts(20) == {"additive": 8, "synergy": 3, "suppression": 3, "epistasis": 3, "neomorphic": 3}
    assert sum(mix.counts(7).values()) == 7
    with pytest.raises(ValueError, match="sum to 1"):
        InteractionMix(additive=0.5, synergy=0.6, suppression=0.0, epistasis=0.0, neomorphic=0.0)


@pytest.fixture(scope="module")
def screen():
    return simulate_perturbations(
        n_genes=300, n_single=12, n_double=20, cells_per_condition=60, n_control=200, seed=5, store_means=True
    )


def test_perturbation_layout(screen):
    obs = screen.obs
    assert screen.n_obs == 200 + 60 * 32
    assert obs["perturbation"].value_counts()["control"] == 200
    assert (obs["perturbation"].value_counts().drop("control") == 60).all()
    assert obs.groupby("n_targets", observed=True)["perturbation"].nunique().to_dict() == {0: 1, 1: 12, 2: 20}
    singles = [p for p in obs["perturbation"].cat.categories if p != "control" and "+" not in p]
    assert set(singles) <= set(screen.var_names)  # targets are simulated genes
    assert (obs["is_control"] == (obs["perturbation"] == "control")).all()
    doubles = obs[obs["n_targets"] == 2]
    assert (
        (doubles["target_1"].astype(str) + "+" + doubles["target_2"].astype(str)) == doubles["perturbation"].astype(str)
    ).all()


def test_interaction_types_honoured(screen):
    kinds = screen.uns["ground_truth"]["interactions"]["interaction_type"].value_counts().to_dict()
    assert kinds == InteractionMix().counts(20)
    assert set(kinds) <= set(INTERACTION_TYPES)


def test_double_effects_follow_their_interaction_type(screen):
    truth = screen.uns["ground_truth"]
    singles, doubles, table = truth["single_effects"], truth["double_effects"], truth["interactions"]
    for name, row in table.iterrows():
        a, b = singles.loc[row["target_1"]].to_numpy(), singles.loc[row["target_2"]].to_numpy()
        on_target = np.zeros_like(a)
        for target in (row["target_1"], row["target_2"]):
            on_target[screen.var_names.get_loc(target)] = 2.0
        down_a, down_b = a - np.where(on_target > 0, a, 0), b - np.where(on_target > 0, b, 0)
        effect = doubles.loc[name].to_numpy()
        kind = row["interaction_type"]
        if kind == "additive":
            np.testing.assert_allclose(effect, a + b)
        elif kind == "synergy":
            np.testing.assert_allclose(effect, on_target + 2.0 * (down_a + down_b))
        elif kind == "suppression":
            np.testing.assert_allclose(effect, on_target + 0.3 * (down_a + down_b))
        elif kind == "epistasis":
            np.testing.assert_allclose(effect, on_target + down_a)
        else:
            novel = effect - (a + b)
            assert np.any(novel != 0)
            assert np.all(novel[(down_a != 0) | (down_b != 0) | (on_target != 0)] == 0)


def test_perturbation_means_follow_effects(screen):
    """Cells of a condition have mu = l * softmax(a + e); on-target genes go up about e^2-fold."""
    truth = screen.uns["ground_truth"]
    obs = screen.obs
    name = truth["double_effects"].index[0]
    cells = np.flatnonzero(obs["perturbation"] == name)
    expected = obs["size_factor"].to_numpy()[cells, None] * _softmax(
        truth["gene_baseline"] + truth["double_effects"].loc[name].to_numpy()
    )
    np.testing.assert_allclose(screen.layers["mu"][cells], expected, rtol=1e-5)
    target = truth["single_effects"].index[0]
    x = screen.X.toarray()
    frequency = x / x.sum(axis=1, keepdims=True)
    gene = screen.var_names.get_loc(target)
    fold = frequency[obs["perturbation"] == target, gene].mean() / frequency[obs["is_control"], gene].mean()
    assert 3.0 < fold < 15.0  # e^2 = 7.4 before the softmax renormalization


def test_simulate_perturbations_rejects_too_many_doubles():
    with pytest.raises(ValueError, match="at most 3 distinct doubles"):
        simulate_perturbations(n_single=3, n_double=4)


def test_trajectory():
    adata = simulate_trajectory(n_cells=3000, n_genes=200, n_branches=3, branch_point=0.25, seed=2)
    obs, truth = adata.obs, adata.uns["ground_truth"]
    assert obs["pseudotime"].between(0, 1).all()
    assert ((obs["branch"] == "trunk") == (obs["pseudotime"] < 0.25)).all()
    assert list(obs["branch"].cat.categories) == ["trunk", "branch_0", "branch_1", "branch_2"]
    assert truth["branch_shifts"].shape == (3, 200) and truth["trunk_shift"].shape == (200,)
    # the gene most induced on branch 0 is higher at the end of branch 0 than at the branch point
    gene = int(np.argmax(truth["branch_shifts"][0] - truth["branch_shifts"][1:].max(axis=0)))
    x = adata.X.toarray() / obs["library_size"].to_numpy()[:, None]
    late = (obs["branch"] == "branch_0") & (obs["pseudotime"] > 0.8)
    near_branch_point = obs["pseudotime"].between(0.2, 0.3)
    assert x[late.to_numpy(), gene].mean() > 2 * x[near_branch_point.to_numpy(), gene].mean()
    with pytest.raises(ValueError, match="branch_point"):
        simulate_trajectory(branch_point=1.0)
