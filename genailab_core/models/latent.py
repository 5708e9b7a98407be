"""Latent generation decoded to counts (chapter 11): a count VAE's latent space, a flow or diffusion model in it,
and the VAE's likelihood to turn generated latents into integer counts (latent diffusion, Rombach et al. 2022,
with scVI's negative binomial decoder, Lopez et al. 2018, in place of an image decoder).

The VAE is trained first and frozen. Its encoder maps training cells to posterior means z; those, standardized
per dimension, are the data of any model with ``loss()`` and ``sample()`` over vectors of the latent size
(``FlowMatching``, ``Diffusion``, with an MLP or a DiT), trained by ``gl.fit``. ``generate`` samples latents,
undoes the standardization, and draws counts x ~ NB(l rho(z), theta) at the library sizes asked for.
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from .tensors import feature_count, module_device


class LatentGenerator(nn.Module):
    """A frozen count VAE plus a generative model of its latents.

    vae: a trained ``VAE`` with a count likelihood ("nb", "zinb", "poisson"). generator: a model over
    (batch, n_latent) vectors whose ``network`` has ``n_in`` = the VAE's n_latent, e.g.
    ``FlowMatching(ConditionalMLP(n_latent, ...), condition_keys=["cell_type"])``.
    """

    def __init__(self, vae: nn.Module, generator: nn.Module):
        super().__init__()
        if getattr(vae, "likelihood", "gaussian") == "gaussian":
            raise ValueError("LatentGenerator decodes latents to counts: give it a VAE with a count likelihood "
                             "('nb', 'zinb' or 'poisson'), not a Gaussian one.")
        n_latent, n_in = vae.n_latent, feature_count(generator.network)
        if n_in != n_latent:
            raise ValueError(f"The generator models vectors of size {n_in}, but the VAE's latent space has "
                             f"n_latent={n_latent}. Build the generator's network with n_in={n_latent}.")
        self.vae, self.generator = vae.eval().requires_grad_(False), generator
        self.register_buffer("z_mean", torch.zeros(n_latent))
        self.register_buffer("z_scale", torch.ones(n_latent))
        self.register_buffer("standardized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def latents(self, counts, vae_codes: torch.Tensor | None = None) -> np.ndarray:
        """Posterior means of cells (cells, genes) of counts, standardized with the mean and s.d. of the first
        call (the training cells): (cells, n_latent), the data the generator is trained on."""
        x = torch.as_tensor(counts.toarray() if sp.issparse(counts) else np.asarray(counts), dtype=torch.float32,
                            device=module_device(self.vae))
        z = self.vae.encode(x, vae_codes).loc
        if not self.standardized:
            self.z_mean.copy_(z.mean(0))
            self.z_scale.copy_(z.std(0).clamp_min(1e-6))
            self.standardized.fill_(True)
        return ((z - self.z_mean) / self.z_scale).cpu().numpy()

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None):
        """The generator's loss on standardized latents (batch["x"] from ``latents``)."""
        return self.generator.loss(batch, step)

    @torch.no_grad()
    def generate(self, library, codes=None, vae_codes: torch.Tensor | None = None, obs: pd.DataFrame | None = None,
                 **sample_kwargs) -> ad.AnnData:
        """New cells as AnnData with integer counts in ``.X`` (float32 CSR): z from the generator (``codes``
        and ``sample_kwargs`` such as nfe, guidance_scale, generator go to its ``sample``), decoded by the VAE at
        the library sizes ``library`` (n,), under ``vae_codes`` (n, n_keys) if the VAE is conditional."""
        library = torch.as_tensor(np.asarray(library, dtype=np.float32)).reshape(-1, 1)
        if (library <= 0).any():
            raise ValueError("Library sizes must be positive: one total count per generated cell.")
        device = module_device(self.vae)
        z = self.generator.sample(len(library), codes=codes, **sample_kwargs)
        z = z.to(device) * self.z_scale + self.z_mean
        counts = self.vae.sample(z=z, library=library.to(device),
                                 c=None if vae_codes is None else vae_codes.to(device))
        return self.vae.as_anndata(counts, library, obs, f"LatentGenerator({type(self.generator).__name__})")
