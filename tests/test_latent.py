"""models/latent.py: a flow in a count VAE's latent space, decoded to counts."""
import anndata as ad
import numpy as np
import pytest
import torch

import genailab_core as gl
from genailab_core.models import FlowMatching
from genailab_core.models.latent import LatentGenerator


def vae(n_latent=4, likelihood="nb"):
    torch.manual_seed(0)
    return gl.models.VAE(30, n_latent=n_latent, n_hidden=16, likelihood=likelihood)


def flow(n_in):
    return FlowMatching(gl.nn.ConditionalMLP(n_in, n_hidden=16, n_layers=1))


def test_a_generator_of_another_latent_size_or_a_gaussian_vae_is_refused():
    with pytest.raises(ValueError, match="n_latent=4"):
        LatentGenerator(vae(4), flow(5))
    with pytest.raises(ValueError, match="count likelihood"):
        LatentGenerator(vae(4, "gaussian"), flow(4))


def test_latents_are_standardized_on_the_first_cells_and_reused_after():
    counts = np.random.default_rng(0).poisson(3.0, (200, 30)).astype(np.float32)
    model = LatentGenerator(vae(), flow(4))
    z = model.latents(counts)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0, ddof=1), 1.0, atol=1e-4)
    assert not np.allclose(model.latents(counts[:50] * 3).mean(0), 0.0, atol=1e-2)   # not re-standardized


def test_generated_cells_are_integer_counts_whose_library_sizes_follow_the_ones_asked_for():
    counts = np.random.default_rng(0).poisson(3.0, (300, 30)).astype(np.float32)
    model = LatentGenerator(vae(), flow(4))
    gl.fit(model, gl.data.CountBatches(ad.AnnData(model.latents(counts)), batch_size=64, seed=0), steps=20,
           lr=1e-2, progress=False)
    library = np.repeat([200.0, 2000.0], 400)
    cells = model.generate(library, nfe=4, generator=torch.Generator().manual_seed(0))
    x = cells.X.toarray()
    assert cells.shape == (800, 30) and (x >= 0).all() and np.array_equal(x, np.round(x))
    totals = x.sum(1)
    assert totals[:400].mean() == pytest.approx(200.0, rel=0.1)          # E[sum_g x_g] = l sum_g rho_g = l
    assert totals[400:].mean() == pytest.approx(2000.0, rel=0.1)
    np.testing.assert_array_equal(cells.obs["library_size"], library)
    with pytest.raises(ValueError, match="positive"):
        model.generate([100.0, 0.0])


def test_generated_latents_are_unstandardized_before_decoding():
    counts = np.random.default_rng(1).poisson(3.0, (200, 30)).astype(np.float32)
    model = LatentGenerator(vae(), flow(4))
    model.latents(counts)
    model.z_mean.fill_(4.0)                                             # a mean far from 0 in the VAE's units
    model.generator.sample = lambda n, **kw: torch.zeros(n, 4)          # z = 0 in standardized units: the mean
    cells = model.generate(np.full(3000, 1e4))
    expected = model.vae.decode(model.z_mean[None], torch.tensor([[1e4]])).mean[0].numpy()
    at_zero = model.vae.decode(torch.zeros(1, 4), torch.tensor([[1e4]])).mean[0].numpy()
    assert np.abs(expected / at_zero - 1).max() > 0.5                  # the test can tell the two apart
    np.testing.assert_allclose(cells.X.toarray().mean(0), expected, rtol=0.15, atol=2.0)
