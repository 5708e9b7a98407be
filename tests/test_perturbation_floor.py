"""The noise floor of the perturbation benchmark: the simulator's expected pseudobulk, split halves."""
import numpy as np
import pytest

from genailab_core import perturb_bench as pb
from genailab_core.data import simulate_perturbations, split_gears
from genailab_core.data import perturbation_data as pdata
from genailab_core.data.simulate_screen import expected_pseudobulk, true_log_frequencies


@pytest.fixture(scope="module")
def screen():
    """Many conditions of 60 cells, so that floors averaged over conditions are precise."""
    adata = simulate_perturbations(n_genes=150, n_single=30, n_double=40, cells_per_condition=60, n_control=400,
                                   effect_fraction=0.1, seed=5)
    return adata, expected_pseudobulk(adata, n_cells=1500, seed=1)


def test_expected_pseudobulk_is_the_mean_of_log_normalized_cells(screen):
    """The observed pseudobulk scatters around the expectation by its own noise only, while the log of
    the expected frequencies (the naive 'truth') is far from it: E log1p(.) is not log1p E(.)."""
    adata, (expected, mc_var) = screen
    observed = pdata.pseudobulk(adata)
    cond = adata.obs["condition"].astype(str).to_numpy()
    values = pdata.log_normalized(adata).toarray()
    obs_var = np.vstack([values[cond == c].var(0, ddof=1) / (cond == c).sum() for c in observed.index])
    z = (observed - expected.loc[observed.index]).to_numpy() / np.sqrt(obs_var + mc_var.loc[observed.index].to_numpy())
    z = z[np.isfinite(z)]
    assert abs(z.mean()) < 0.15 and 0.9 < z.std() < 1.1                  # unbiased, noise of the right size
    eta = true_log_frequencies(adata).loc[observed.index].to_numpy()
    naive = np.log1p(1e4 * np.exp(eta) / np.exp(eta).sum(1, keepdims=True))
    z_naive = (observed.to_numpy() - naive) / np.sqrt(obs_var + 1e-12)
    assert np.abs(z_naive[np.isfinite(z_naive)]).mean() > 3                # the naive expectation is biased
    np.testing.assert_allclose(np.median(mc_var.to_numpy() * 1500 / 60 / np.maximum(obs_var, 1e-12)), 1.0, atol=0.15)


def test_split_half_floor_matches_the_true_floor(screen):
    """Half the halves' distance estimates the L2 of the true expected profile: its root mean square over
    conditions is within 7% of the true one (1/sqrt(2) of the halves' distance would be 41% too high)."""
    adata, expected = screen
    data = pdata.prepare_perturbation_data(adata, "sim", expected=expected)
    labels = [p for p in data.pseudobulk.index if p != "control"]
    truth = np.linalg.norm((data.pseudobulk.loc[labels] - data.expected.loc[labels]).to_numpy(), axis=1) ** 2
    truth = np.sqrt(np.mean(truth - data.expected_variance.loc[labels].to_numpy().sum(1)))
    floors = [pb.split_half_l2(data, labels, seed) for seed in range(3)]
    halves = np.sqrt(np.mean([np.mean(f["floor"] ** 2) for f in floors]))
    assert halves == pytest.approx(truth, rel=0.07)
    assert np.allclose(floors[0]["floor"], floors[0]["l2_halves"] / 2)    # 60 cells: two halves of 30


def test_benchmark_floor_rows(screen):
    """The floor is a row of every split: every metric on the simulator (the expected profile scored
    like a prediction), only L2 on real data; it is below no change and the discrimination is within groups."""
    adata, expected = screen
    sim = pdata.prepare_perturbation_data(adata, "sim", expected=expected)
    real = pdata.prepare_perturbation_data(adata, "as if real")               # no expected profile
    methods = {"no change": pb.default_methods()["no change"]}
    results = pb.benchmark([sim, real], {"gears": split_gears}, methods, seeds=[0, 1])
    summary = pb.summarize(results)
    floor = summary[summary["method"] == pb.NOISE_FLOOR]
    assert set(floor.loc[floor["dataset"] == "sim", "metric"]) >= set(pb.METRICS)
    assert set(floor.loc[floor["dataset"] == "as if real", "metric"]) == {pb.L2, "seconds"}
    l2 = summary[summary["metric"] == pb.L2].set_index(["dataset", "group", "method"])["mean"].unstack("method")
    assert (l2[pb.NOISE_FLOOR] < l2["no change"]).all()
    # the two floors agree: split halves (real-data estimate) vs the expected profile (truth)
    np.testing.assert_allclose(l2.loc["as if real", pb.NOISE_FLOOR], l2.loc["sim", pb.NOISE_FLOOR], rtol=0.15)
    disc = summary[(summary["method"] == "no change") & (summary["metric"] == pb.DISCRIMINATION)]
    assert np.allclose(disc["mean"], 0.5)                                   # identical predictions within a group
