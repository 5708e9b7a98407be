"""The VAE: every likelihood trains, the bounds are ordered, bad input is refused clearly."""
import numpy as np
import pytest
import torch

from genailab_core.data.simulate import simulate_counts
from genailab_core.models import VAE
from genailab_core.train import fit


def nb_counts(n_cells=300, n_genes=40, seed=0):
    """Two cell types with different NB mean profiles (theta = 2, libraries ~ 500): counts (cells, genes), labels."""
    adata = simulate_counts(n_cells=n_cells, n_genes=n_genes, n_cell_types=2, n_batches=1, n_programs=0,
                            dispersion=2.0, library_log_mean=np.log(500), seed=seed)
    return torch.tensor(adata.X.toarray()), adata.obs["cell_type"].cat.codes.to_numpy()


def as_batches(x, size=100):
    return [{"x": x[i:i + size]} for i in range(0, len(x), size)]


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson", "gaussian"])
def test_each_likelihood_trains_one_epoch_with_finite_loss(likelihood):
    x, _ = nb_counts()
    data = torch.log1p(x) if likelihood == "gaussian" else x
    model = VAE(x.shape[1], n_latent=4, n_hidden=32, likelihood=likelihood)
    history = fit(model, as_batches(data), as_batches(data), epochs=1, progress=False)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert model.latent(data).shape == (len(x), 4)


def test_importance_sampled_likelihood_is_above_elbo_and_nb_beats_poisson():
    torch.manual_seed(0)
    x, _ = nb_counts(n_cells=400)
    scores = {}
    for likelihood in ("nb", "poisson"):
        model = VAE(x.shape[1], n_latent=2, n_hidden=32, likelihood=likelihood)
        fit(model, as_batches(x), epochs=40, lr=3e-3, progress=False)
        elbo = model.elbo(x).mean()
        mll = model.log_likelihood_is(x, n_samples=200).mean()
        assert mll >= elbo                       # log p(x) >= IWAE_K >= ELBO (Burda et al. 2016, Thm 1)
        scores[likelihood] = float(mll)
    assert scores["nb"] > scores["poisson"]     # the data are overdispersed (theta = 2)


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_sampled_counts_have_the_decoder_moments_at_the_given_library(likelihood):
    """x ~ p(x | z) at library l: integers whose mean and variance per gene are the decoder's (5 s.e.)."""
    torch.manual_seed(0)
    x, _ = nb_counts()
    model = VAE(x.shape[1], n_latent=3, n_hidden=16, likelihood=likelihood).eval()
    n = 20_000
    z, library = torch.randn(1, 3).expand(n, 3), torch.full((n, 1), 500.0)
    draws = model.sample(z=z, library=library)
    px = model.decode(z[:1], library[:1])
    mean, var = px.mean[0], px.variance[0]
    assert draws.shape == (n, x.shape[1]) and torch.equal(draws, draws.round()) and (draws >= 0).all()
    assert ((draws.mean(0) - mean).abs() <= 5 * (var / n).sqrt()).all()
    assert ((draws.var(0) / var - 1).abs() < 0.15).all()             # sd of the ratio ~ sqrt(2/n) plus kurtosis
    assert not ((draws.mean(0) - 1.2 * mean).abs() <= 5 * (var / n).sqrt()).all()   # a wrong mean fails
    with pytest.raises(ValueError, match="library"):
        model.sample(5)


def test_bad_input_is_refused_with_clear_messages():
    x, _ = nb_counts()
    genes = [f"g{i}" for i in range(x.shape[1])]
    model = VAE(x.shape[1], gene_names=genes)
    with pytest.raises(ValueError, match="non-integer"):
        model.check_input(torch.log1p(x))
    with pytest.raises(ValueError, match="NaN"):
        model.check_input(torch.where(x > 5, torch.nan, x))
    with pytest.raises(ValueError, match="trained on 40 genes"):
        model.check_input(x[:, :30])
    with pytest.raises(ValueError, match="missing"):
        model.check_input(x, gene_names=genes[:-1] + ["other"])
    with pytest.raises(ValueError, match="likelihood"):
        VAE(10, likelihood="gamma")


def test_kl_warmup_is_linear_in_optimizer_steps_and_off_when_evaluating():
    torch.manual_seed(0)
    model = VAE(20, n_latent=3, n_hidden=8, kl_warmup_steps=8).eval()
    batch = {"x": torch.poisson(torch.full((16, 20), 3.0))}
    weights = [float(model.loss(batch, step).terms["kl_weight"]) for step in (0, 2, 4, 8, 100, None)]
    assert weights == [0.0, 0.25, 0.5, 1.0, 1.0, 1.0]
    torch.manual_seed(1)
    out = model.loss(batch, 2)
    assert float(out.loss) == pytest.approx(float(out.terms["reconstruction"] + 0.25 * out.terms["kl"]), rel=1e-5)


def test_embed_writes_the_posterior_means_to_obsm_scverse_style():
    adata = simulate_counts(n_cells=120, n_genes=30, n_cell_types=2, n_batches=1, n_programs=0, seed=1)
    model = VAE(adata.n_vars, n_latent=3, n_hidden=16).eval()
    means = model.latent_representation(adata, batch_size=50)                                 # three batches, in order
    np.testing.assert_allclose(adata.obsm["X_vae"], model.latent(torch.tensor(adata.X.toarray())).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert means is adata.obsm["X_vae"] or np.array_equal(means, adata.obsm["X_vae"])
    cvae = VAE(adata.n_vars, n_latent=3, n_hidden=16, condition_keys=["cell_type"], n_conditions=[2]).eval()
    cvae.latent_representation(adata, key="X_cvae")
    codes = torch.tensor(adata.obs["cell_type"].cat.codes.to_numpy(), dtype=torch.long)[:, None]
    np.testing.assert_allclose(adata.obsm["X_cvae"], cvae.latent(torch.tensor(adata.X.toarray()), codes).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_generate_returns_anndata_of_counts_with_the_models_moments():
    import pandas as pd
    import scanpy as sc

    torch.manual_seed(0)
    x, _ = nb_counts()
    model = VAE(x.shape[1], n_latent=3, n_hidden=16, gene_names=[f"g{i}" for i in range(x.shape[1])]).eval()
    n = 20_000
    cells = model.generate(np.full(n, 500.0), obs=pd.DataFrame({"cell_type": ["t0"] * n}))
    assert cells.shape == (n, x.shape[1]) and list(cells.var_names) == model.gene_names
    assert list(cells.obs.columns) == ["cell_type", "library_size"] and (cells.obs.library_size == 500).all()
    X = cells.X.toarray()
    assert np.array_equal(X, np.round(X)) and X.min() >= 0
    with torch.no_grad():                                                    # E[x] = E_z[l rho(z)]
        px = model.decode(model.prior(n).sample(), torch.full((n, 1), 500.0))
        expected, spread = px.mean.mean(0).numpy(), px.mean.std(0).numpy()
    se = np.sqrt(X.var(0) / n + spread ** 2 / n)
    assert (np.abs(X.mean(0) - expected) <= 5 * se).all()
    sc.pp.normalize_total(cells)                                             # scanpy reads it as it is
    with pytest.raises(ValueError, match="log-normalized"):
        VAE(4, likelihood="gaussian").generate(np.ones(3))


def test_decoding_at_an_embedding_equals_decoding_its_codes_and_groups_split_the_parameters():
    torch.manual_seed(0)
    model = VAE(6, n_latent=2, n_hidden=8, condition_keys=["condition"], n_conditions=[2], condition_dim=3).eval()
    z, c0, c1 = torch.randn(4, 2), torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1, dtype=torch.long)
    lib = torch.full((4, 1), 100.0)
    torch.testing.assert_close(model.decode(z, lib, embedding=model.embed(c1)).mean, model.decode(z, lib, c1).mean)
    halfway = model.decode(z, lib, embedding=0.5 * (model.embed(c0) + model.embed(c1))).mean
    assert not torch.allclose(halfway, model.decode(z, lib, c0).mean)
    groups = model.parameter_groups()
    named = {id(p) for g in groups.values() for p in g}
    assert len(named) == sum(len(g) for g in groups.values())                    # disjoint
    assert named | {id(p) for p in model.embed.parameters()} == {id(p) for p in model.parameters()}
    assert any(p is model.log_theta for p in groups["decoder"])


def test_gaussian_initialize_from_data_sets_the_moment_estimates():
    """The decoder starts at the per-gene mean and sd of the data: with the output weights zeroed, its
    log-likelihood is the per-gene Gaussian MLE (scipy.stats.norm.fit), i.e. the best z-independent model."""
    from scipy import stats

    torch.manual_seed(0)
    y = torch.randn(500, 6) * torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0, 0.3]) + torch.arange(6.0)
    model = VAE(6, n_latent=2, likelihood="gaussian").initialize_from_data(y)
    model.decoder.net[-1].weight.data.zero_()
    model.eval()
    dist = model.decode(torch.zeros(500, 2))
    for g in range(6):
        loc, scale = stats.norm.fit(y[:, g].numpy())
        assert dist.loc[0, g].item() == pytest.approx(loc, rel=1e-4, abs=1e-4)
        assert dist.scale[0, g].item() == pytest.approx(scale, rel=2e-3)        # n-1 vs n: 0.1% at n = 500
    with pytest.raises(ValueError, match="likelihood"):
        VAE(6, likelihood="nb").initialize_from_data(y)
