"""The variational autoencoder with a pluggable likelihood (Kingma & Welling 2014; scVI, Lopez et al. 2018).

    z ~ N(0, I),   x_g | z, c ~ p(x_g | mu_g = l * rho_g(z, c), theta_g)  (count likelihoods)
    x_g | z, c ~ N(m_g(z, c), s_g^2)                                      (gaussian, on log-normalized data)

trained by maximizing the ELBO  E_q[log p(x | z, c)] - beta * KL(q(z | x, c) || p(z))  with the
reparameterization z = mu(x) + sigma(x) * eps (Kingma & Welling 2014, eq. 10). The same class is

- a conditional VAE (Sohn et al. 2015) when ``condition_keys`` are given: the codes c of those obs
  columns are embedded and fed to encoder and decoder, so that decoding with another c asks
  "what would this cell look like under condition c?";
- a beta-VAE (Higgins et al. 2017) with ``beta`` != 1, optionally with free bits (Kingma et al. 2016);
- an importance-weighted autoencoder (Burda et al. 2016) with ``objective="iwae"``.
"""
from __future__ import annotations

from typing import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.distributions import Distribution, Normal, Poisson

from ..data.preprocess import check_counts, check_genes
from ..distributions import NegativeBinomial, ZeroInflatedNegativeBinomial, bounded_theta
from ..nn import ConditionEmbedding, CountDecoder, GaussianDecoder, GaussianEncoder
from .base import LatentVariableModel, iwae_bound

LIKELIHOODS = ("nb", "zinb", "poisson", "gaussian")

__all__ = ["LIKELIHOODS", "VAE", "iwae_bound"]


class VAE(LatentVariableModel):
    """VAE for a cells x genes matrix. ``likelihood``: "nb", "zinb", "poisson" (counts) or "gaussian".

    For count likelihoods the encoder sees log1p(x) and the decoder's mean is offset by the
    observed library size l = sum_g x_g (as scVI with ``use_observed_lib_size=True``).

    Conditions: ``condition_keys`` names obs columns (the keys of a ``CountBatches`` batch) and
    ``n_conditions`` their numbers of categories; ``condition_dim`` None one-hot encodes them,
    an integer learns an embedding of that size. ``inject`` is "both" (encoder and decoder, the
    CVAE of Sohn et al. 2015) or "decoder" (as scVI does for batch). ``condition_encoder``
    replaces the categorical embedding by any module with an ``n_out`` attribute that maps the
    batch tensor of its one condition key to (batch, n_out), e.g. a set encoder of perturbation
    targets (models/perturbation_cvae.py).
    Objective (see :class:`LatentVariableModel`): ``beta`` weights the KL (1 = the ELBO); ``free_bits`` > 0
    stops penalizing the KL of a latent dimension below that many nats (Kingma et al. 2016, eq. 15);
    ``kl_warmup_steps`` raises the KL weight from 0 to 1 over that many optimizer steps;
    ``objective="iwae"`` trains the K-sample bound with K = ``n_importance`` (Burda et al. 2016).
    The inverse dispersion is kept in [THETA_MIN, THETA_MAX] (1e-4 .. 1e6): beyond 1e6 a gene is Poisson
    to within 1e-6 of its variance at any mean below 1, and exp(log_theta) cannot overflow.
    """

    def __init__(self, n_genes: int, n_latent: int = 10, n_hidden: int = 128, n_layers: int = 1,
                 likelihood: str = "nb", dropout: float = 0.1, norm: str | None = "batch",
                 gene_names: Sequence[str] | None = None, condition_keys: Sequence[str] = (),
                 n_conditions: Sequence[int] = (), condition_dim: int | None = None, inject: str = "both",
                 condition_encoder: nn.Module | None = None,
                 beta: float = 1.0, free_bits: float = 0.0, objective: str = "elbo", n_importance: int = 1,
                 kl_warmup_steps: int = 0):
        super().__init__(n_latent, objective, n_importance, beta, free_bits, kl_warmup_steps)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        if condition_encoder is not None and (len(condition_keys) != 1 or n_conditions):
            raise ValueError("A condition_encoder reads one condition key: give condition_keys=[key] and no n_conditions.")
        if condition_encoder is None and len(condition_keys) != len(n_conditions) or inject not in ("both", "decoder"):
            raise ValueError("Give one number of categories per condition key, and inject='both' or 'decoder'.")
        self.n_genes, self.likelihood = n_genes, likelihood
        self.gene_names = list(gene_names) if gene_names is not None else None
        if self.gene_names is not None and len(self.gene_names) != n_genes:
            raise ValueError(f"gene_names has {len(self.gene_names)} names but n_genes={n_genes}.")
        self.condition_keys, self.inject = list(condition_keys), inject
        self.embed = condition_encoder if condition_encoder is not None else (
            ConditionEmbedding(n_conditions, condition_dim) if self.condition_keys else None)
        n_c = self.embed.n_out if self.embed is not None else 0
        self.encoder = GaussianEncoder(n_genes + (n_c if inject == "both" else 0), n_latent, n_hidden,
                                       n_layers, dropout, norm)
        if likelihood == "gaussian":
            self.decoder = GaussianDecoder(n_latent + n_c, n_genes, n_hidden, n_layers, 0.0, norm)
            self.log_scale = nn.Parameter(torch.zeros(n_genes))           # per-gene s_g
        else:
            self.decoder = CountDecoder(n_latent + n_c, n_genes, n_hidden, n_layers, 0.0, norm,
                                        zero_inflated=likelihood == "zinb")
            self.log_theta = nn.Parameter(torch.zeros(n_genes))           # per-gene inverse dispersion

    @torch.no_grad()
    def initialize_from_data(self, y: torch.Tensor) -> "VAE":
        """Data-dependent start of the Gaussian decoder: output bias = per-gene mean of y, s_g = per-gene sd.

        y: (cells, genes) log-normalized training data. Started at s_g = 1, Adam moves log s_g by about lr
        per step, so a few hundred steps cannot reach the data's scale and the ELBO is still falling when
        training ends; the maximum-likelihood s_g of a decoder that ignores z is the gene's sd, a start
        one step from the optimum of the mean-only model. Returns self.
        """
        if self.likelihood != "gaussian":
            raise ValueError(f"initialize_from_data sets the Gaussian decoder's mean and scale; this VAE's likelihood "
                             f"is {self.likelihood!r}, whose per-gene parameters are fitted by training.")
        if y.ndim != 2 or y.shape[1] != self.n_genes or y.shape[0] < 2:
            raise ValueError(f"Expected y of shape (cells >= 2, {self.n_genes}), got {tuple(y.shape)}.")
        y = y.float()
        self.decoder.net[-1].bias.copy_(y.mean(0))                        # E[y_g] at the start, for any z
        self.log_scale.copy_(y.std(0).clamp_min(1e-3).log())              # s_g = sd of gene g
        return self

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
    @property
    def theta(self) -> torch.Tensor:
        """Per-gene inverse dispersion theta_g = exp(log_theta_g), kept in [THETA_MIN, THETA_MAX]. (genes,)"""
        return bounded_theta(self.log_theta)

    def conditions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The condition codes of a batch, c: (batch, n_keys) long (or what a custom condition encoder
        reads), or None for an unconditional VAE."""
        if not self.condition_keys:
            return None
        missing = [k for k in self.condition_keys if k not in batch]
        if missing:
            raise KeyError(f"The batch has no condition {missing}; build it with "
                           f"CountBatches(adata, condition_keys={self.condition_keys}).")
        if not isinstance(self.embed, ConditionEmbedding):
            return batch[self.condition_keys[0]]                            # the custom encoder's input as is
        return torch.stack([batch[k] for k in self.condition_keys], dim=-1)

    def _with_conditions(self, h: torch.Tensor, c: torch.Tensor | None,
                         embedding: torch.Tensor | None = None) -> torch.Tensor:
        """Append the embedded conditions (or a given ``embedding``: (batch, n_c)) to h: (..., batch, d)
        -> (..., batch, d + n_c)."""
        if self.embed is None:
            return h
        if c is None and embedding is None:
            raise ValueError(f"This is a conditional VAE: pass the codes of {self.condition_keys} as c.")
        e = self.embed(c) if embedding is None else embedding
        return torch.cat([h, e.expand(*h.shape[:-1], e.shape[-1])], dim=-1)

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x, c). x: (batch, genes), c: (batch, n_keys) -> Normal over (batch, n_latent)."""
        h = x if self.likelihood == "gaussian" else torch.log1p(x)
        return self.encoder(self._with_conditions(h, c) if self.inject == "both" else h)

    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None,
               c: torch.Tensor | None = None, embedding: torch.Tensor | None = None) -> Distribution:
        """p(x | z, c). z: (..., batch, n_latent), library: (batch, 1), c: (batch, n_keys)
        -> distribution over (..., batch, genes). ``embedding`` (batch, n_c) replaces the embedded codes,
        e.g. to decode between two conditions: (1 - t) embed(c_0) + t embed(c_1)."""
        z = self._with_conditions(z, c, embedding)
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
        theta = self.theta
        if self.likelihood == "nb":
            return NegativeBinomial(mu, theta, validate_args=False)
        return ZeroInflatedNegativeBinomial(mu, theta, zi.reshape(*shape[:-1], self.n_genes), validate_args=False)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of q(z | x, c) and of p(x | z, c): {"encoder": [...], "decoder": [...]} (the
        condition embedding, shared by both, is in neither)."""
        per_gene = [self.log_scale] if self.likelihood == "gaussian" else [self.log_theta]
        return {"encoder": list(self.encoder.parameters()), "decoder": list(self.decoder.parameters()) + per_gene}

    def library(self, x: torch.Tensor) -> torch.Tensor:
        """Observed library size l = sum_g x_g. x: (batch, genes) -> (batch, 1)."""
        return x.sum(-1, keepdim=True)

    # -- using the model -------------------------------------------------------------------------
    @torch.no_grad()
    def counterfactual(self, x: torch.Tensor, c: torch.Tensor, c_new: torch.Tensor,
                       library: torch.Tensor | None = None) -> torch.Tensor:
        """Expected expression of cells x (observed under c) had they been under c_new.

        Encode with the observed condition, keep the posterior mean z, decode with the new one
        (the CVAE counterfactual; scGen's swap, Lotfollahi et al. 2019). x: (batch, genes),
        c, c_new: (batch, n_keys) -> (batch, genes): decoder means (counts at ``library``, default the
        cells' own library sizes) or, for the gaussian likelihood, log-normalized means.
        """
        z = self.encode(x, c).loc
        library = self.library(x) if library is None else library
        return self.decode(z, library, c_new).mean

    @torch.no_grad()
    def generate(self, library, c: torch.Tensor | None = None, obs: pd.DataFrame | None = None) -> ad.AnnData:
        """New cells from the prior, as AnnData: counts x ~ p(x | z, c), z ~ N(0, I), in ``.X`` (float32 CSR).

        library: (n,) library sizes, one per generated cell, e.g. drawn from the training cells' totals of
        the modelled genes; c: (n, n_keys) condition codes; obs: (n rows) the conditions' labels, copied
        into ``.obs`` beside ``library_size``. Genes are ``gene_names`` when the model has them.
        """
        if self.likelihood == "gaussian":
            raise ValueError("generate() returns counts; this VAE models log-normalized data. Use sample().")
        library = torch.as_tensor(np.asarray(library, dtype=np.float32)).reshape(-1, 1)
        device = next(self.parameters()).device
        counts = self.sample(len(library), library.to(device), c=None if c is None else c.to(device)).cpu()
        return self.as_anndata(counts, library, obs, generated_by=f"{type(self).__name__}({self.likelihood})")

    def as_anndata(self, counts: torch.Tensor, library: torch.Tensor, obs: pd.DataFrame | None,
                   generated_by: str) -> ad.AnnData:
        """Generated counts (n, genes) as AnnData: float32 CSR ``.X``, ``obs`` (n rows, optional) plus
        ``library_size`` (library: (n, 1)), genes named as the model's, ``uns["generated_by"]``."""
        frame = pd.DataFrame(index=[f"generated_{i}" for i in range(len(library))])
        if obs is not None:
            frame = obs.reset_index(drop=True).set_index(frame.index)
        frame["library_size"] = library.cpu().numpy().ravel()
        genes = self.gene_names or [f"gene_{g}" for g in range(self.n_genes)]
        return ad.AnnData(sp.csr_matrix(counts.cpu().numpy()), obs=frame, var=pd.DataFrame(index=genes),
                          uns={"generated_by": generated_by})

    @torch.no_grad()
    def sample(self, n: int | None = None, library: torch.Tensor | None = None,
               z: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x ~ p(x | z, c) for z from the prior (``n`` cells) or given ``z``; counts need ``library``.

        library: (n, 1) library sizes, e.g. resampled from the training cells; c: (n, n_keys) codes.
        """
        if z is None:
            z = self.prior(n).sample()
        if self.likelihood != "gaussian" and library is None:
            raise ValueError("Sampling counts needs a library size per cell: pass library=(n, 1) tensor.")
        return self.decode(z, library, c).sample()
