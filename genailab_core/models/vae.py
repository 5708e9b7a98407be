"""The variational autoencoder with a pluggable likelihood (Kingma & Welling 2014; scVI, Lopez et al. 2018).

    z ~ N(0, I),   x_g | z ~ p(x_g | mu_g = l * rho_g(z), theta_g)        (count likelihoods)
    x_g | z ~ N(m_g(z), s_g^2)                                            (gaussian, on log-normalized data)

trained by maximizing the ELBO  E_q[log p(x | z)] - KL(q(z | x) || p(z))  with the
reparameterization z = mu(x) + sigma(x) * eps (Kingma & Welling 2014, eq. 10).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, Normal, Poisson, kl_divergence

from ..data.preprocess import check_counts, check_genes
from ..distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from ..nn import CountDecoder, GaussianDecoder, GaussianEncoder
from ..train import LossOutput

LIKELIHOODS = ("nb", "zinb", "poisson", "gaussian")


class VAE(nn.Module):
    """VAE for a cells x genes matrix. ``likelihood``: "nb", "zinb", "poisson" (counts) or "gaussian".

    For count likelihoods the encoder sees log1p(x) and the decoder's mean is offset by the
    observed library size l = sum_g x_g (as scVI with ``use_observed_lib_size=True``).
    """

    def __init__(self, n_genes: int, n_latent: int = 10, n_hidden: int = 128, n_layers: int = 1,
                 likelihood: str = "nb", dropout: float = 0.1, norm: str | None = "batch",
                 gene_names: Sequence[str] | None = None):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        self.n_genes, self.n_latent, self.likelihood = n_genes, n_latent, likelihood
        self.gene_names = list(gene_names) if gene_names is not None else None
        if self.gene_names is not None and len(self.gene_names) != n_genes:
            raise ValueError(f"gene_names has {len(self.gene_names)} names but n_genes={n_genes}.")
        self.encoder = GaussianEncoder(n_genes, n_latent, n_hidden, n_layers, dropout, norm)
        if likelihood == "gaussian":
            self.decoder = GaussianDecoder(n_latent, n_genes, n_hidden, n_layers, 0.0, norm)
            self.log_scale = nn.Parameter(torch.zeros(n_genes))           # per-gene s_g
        else:
            self.decoder = CountDecoder(n_latent, n_genes, n_hidden, n_layers, 0.0, norm,
                                        zero_inflated=likelihood == "zinb")
            self.log_theta = nn.Parameter(torch.zeros(n_genes))           # per-gene inverse dispersion

    # -- input checks -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor, gene_names: Sequence[str] | None = None) -> None:
        """Raise a clear error for the wrong number/order of genes, NaN, or non-counts."""
        if gene_names is not None and self.gene_names is not None:
            check_genes(list(gene_names), self.gene_names)
        if x.shape[-1] != self.n_genes:
            raise ValueError(f"The model was trained on {self.n_genes} genes but the data have {x.shape[-1]}; "
                             "subset the data to the model's genes (adata[:, model.gene_names]).")
        if self.likelihood == "gaussian":
            if not torch.isfinite(x).all():
                raise ValueError("The data contain NaN/Inf values; remove or impute them first.")
        else:
            check_counts(x, what=f"input to a {self.likelihood.upper()} VAE")

    # -- the generative model and the posterior ------------------------------------------------
    def prior(self, n: int, device: torch.device | None = None) -> Normal:
        """p(z) = N(0, I). Returns a Normal with batch shape (n, n_latent)."""
        zeros = torch.zeros(n, self.n_latent, device=device or self.log_scale_or_theta.device)
        return Normal(zeros, torch.ones_like(zeros))

    @property
    def log_scale_or_theta(self) -> torch.Tensor:
        return self.log_scale if self.likelihood == "gaussian" else self.log_theta

    def encode(self, x: torch.Tensor) -> Normal:
        """q(z | x). x: (batch, genes) -> Normal over (batch, n_latent)."""
        return self.encoder(x if self.likelihood == "gaussian" else torch.log1p(x))

    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None) -> Distribution:
        """p(x | z). z: (..., batch, n_latent), library: (batch, 1) -> distribution over (..., batch, genes)."""
        shape = z.shape
        flat = z.reshape(-1, shape[-1])
        if self.likelihood == "gaussian":
            mean = self.decoder(flat).reshape(*shape[:-1], self.n_genes)
            return Normal(mean, self.log_scale.exp())
        rho, zi = self.decoder(flat)
        rho = rho.reshape(*shape[:-1], self.n_genes)
        mu = (library * rho).clamp_min(1e-8)                                # mu = l * rho(z)
        if self.likelihood == "poisson":
            return Poisson(mu, validate_args=False)
        theta = self.log_theta.exp()
        if self.likelihood == "nb":
            return NegativeBinomial(mu, theta, validate_args=False)
        return ZeroInflatedNegativeBinomial(mu, theta, zi.reshape(*shape[:-1], self.n_genes), validate_args=False)

    def library(self, x: torch.Tensor) -> torch.Tensor:
        """Observed library size l = sum_g x_g. x: (batch, genes) -> (batch, 1)."""
        return x.sum(-1, keepdim=True)

    # -- objectives -----------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample ELBO terms per cell: (E_q log p(x|z), KL(q || p)), each (batch,)."""
        qz = self.encode(x)
        z = qz.rsample()                                                    # reparameterization trick
        px = self.decode(z, self.library(x))
        reconstruction = px.log_prob(x).sum(-1)
        kl = kl_divergence(qz, self.prior(x.shape[0], x.device)).sum(-1)   # closed form, Gaussians
        return reconstruction, kl

    def loss(self, batch: dict[str, torch.Tensor], kl_weight: float = 1.0) -> LossOutput:
        """Negative (warm-up weighted) ELBO, mean over the cells of the batch."""
        reconstruction, kl = self.elbo_terms(batch["x"])
        loss = -(reconstruction - kl_weight * kl).mean()
        return LossOutput(loss=loss, reconstruction=-reconstruction.mean(), kl=kl.mean())

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO per cell (nats), one sample of z. x: (batch, genes) -> (batch,)."""
        reconstruction, kl = self.elbo_terms(x)
        return reconstruction - kl

    @torch.no_grad()
    def log_likelihood_is(self, x: torch.Tensor, n_samples: int = 100, chunk: int = 50) -> torch.Tensor:
        """Importance-sampled log p(x) per cell with q(z|x) as proposal (Burda et al. 2016, eq. 8).

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,  z_k ~ q(z|x).
        x: (batch, genes) -> (batch,). Evaluated in chunks of samples to bound memory.
        """
        qz, library = self.encode(x), self.library(x)
        prior = self.prior(x.shape[0], x.device)
        log_w = []
        for start in range(0, n_samples, chunk):
            z = qz.sample((min(chunk, n_samples - start),))                 # (k, batch, latent)
            log_w.append(self.decode(z, library).log_prob(x).sum(-1)
                         + prior.log_prob(z).sum(-1) - qz.log_prob(z).sum(-1))
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(n_samples)

    # -- using the model -------------------------------------------------------------------------
    @torch.no_grad()
    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means E_q[z]. x: (batch, genes) -> (batch, n_latent)."""
        return self.encode(x).loc

    @torch.no_grad()
    def sample(self, n: int | None = None, library: torch.Tensor | None = None,
               z: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x ~ p(x | z) for z from the prior (``n`` cells) or given ``z``; counts need ``library``.

        library: (n, 1) library sizes, e.g. resampled from the training cells.
        """
        if z is None:
            z = self.prior(n).sample()
        if self.likelihood != "gaussian" and library is None:
            raise ValueError("Sampling counts needs a library size per cell: pass library=(n, 1) tensor.")
        return self.decode(z, library).sample()
