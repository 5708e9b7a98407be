"""The explorers: static grids draw the decoded readouts; live mode builds one slider per dimension."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from genailab_core.models import VAE  # noqa: E402
from genailab_core.widgets import decode_means, latent_explorer, traversal_explorer  # noqa: E402


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return VAE(5, n_latent=3, n_hidden=8, gene_names=list("ABCDE")).eval()


def test_static_latent_explorer_plots_decoded_means(model):
    z_ref = torch.randn(50, 3)
    fig = latent_explorer(model, z_ref, model.gene_names, genes=["B", "D"], dims=(0, 2), static=True)
    assert len(fig.axes) == 2
    line = fig.axes[1].lines[0]                                     # gene B along z[2]
    z = z_ref.mean(0).repeat(21, 1)
    z[:, 2] = z_ref.mean(0)[2] + torch.linspace(-2.5, 2.5, 21) * z_ref.std(0)[2]
    np.testing.assert_allclose(line.get_ydata(), decode_means(model, z)[:, 1], rtol=1e-5)


def test_unknown_gene_is_named(model):
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        latent_explorer(model, torch.randn(10, 3), model.gene_names, genes=["Z"], static=True)


def test_live_mode_builds_one_slider_per_dimension_and_a_slider_moves_its_own_coordinate():
    seen = []

    def readout(z):
        seen.append(z.clone())
        return z[:, :2].numpy()

    center, spread = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 2.0, 0.5])
    box = traversal_explorer(readout, center, spread, dims=(0, 1, 2), names=["a", "b"], static=False)
    sliders = box.children[0].children
    assert len(sliders) == 3 and [s.description for s in sliders] == ["z[0]", "z[1]", "z[2]"]
    torch.testing.assert_close(seen[-1], center[None])                # drawn once at the centre
    sliders[1].value = 1.5                                            # 1.5 spreads along z[1]
    torch.testing.assert_close(seen[-1], torch.tensor([[0.5, -1.0 + 1.5 * 2.0, 2.0]]))
