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

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, Normal, Poisson, kl_divergence

from ..data.preprocess import check_counts, check_genes
from ..distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from ..nn import ConditionEmbedding, CountDecoder, GaussianDecoder, GaussianEncoder
from ..train import LossOutput

LIKELIHOODS = ("nb", "zinb", "poisson", "gaussian")
OBJECTIVES = ("elbo", "iwae")


class VAE(nn.Module):
    """VAE for a cells x genes matrix. ``likelihood``: "nb", "zinb", "poisson" (counts) or "gaussian".

    For count likelihoods the encoder sees log1p(x) and the decoder's mean is offset by the
    observed library size l = sum_g x_g (as scVI with ``use_observed_lib_size=True``).

    Conditions: ``condition_keys`` names obs columns (the keys of a ``CountBatches`` batch) and
    ``n_conditions`` their numbers of categories; ``condition_dim`` None one-hot encodes them,
    an integer learns an embedding of that size. ``inject`` is "both" (encoder and decoder, the
    CVAE of Sohn et al. 2015) or "decoder" (as scVI does for batch). ``condition_encoder``
    replaces the categorical embedding by any module with an ``n_out`` attribute that maps the
    batch tensor of its one condition key to (batch, n_out), e.g. a set encoder of perturbation
    targets (models/perturbation.py).
    Objective: ``beta`` weights the KL (1 = the ELBO); ``free_bits`` > 0 stops penalizing the KL
    of a latent dimension below that many nats (batch mean, Kingma et al. 2016, eq. 15);
    ``objective="iwae"`` trains the K-sample bound with K = ``n_importance`` (Burda et al. 2016).
    """

    def __init__(self, n_genes: int, n_latent: int = 10, n_hidden: int = 128, n_layers: int = 1,
                 likelihood: str = "nb", dropout: float = 0.1, norm: str | None = "batch",
                 gene_names: Sequence[str] | None = None, condition_keys: Sequence[str] = (),
                 n_conditions: Sequence[int] = (), condition_dim: int | None = None, inject: str = "both",
                 condition_encoder: nn.Module | None = None,
                 beta: float = 1.0, free_bits: float = 0.0, objective: str = "elbo", n_importance: int = 1):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        if objective not in OBJECTIVES or n_importance < 1:
            raise ValueError(f"objective must be one of {OBJECTIVES} and n_importance >= 1, "
                             f"got {objective!r}, {n_importance}.")
        if condition_encoder is not None and (len(condition_keys) != 1 or n_conditions):
            raise ValueError("A condition_encoder reads one condition key: give condition_keys=[key] and no n_conditions.")
        if condition_encoder is None and len(condition_keys) != len(n_conditions) or inject not in ("both", "decoder"):
            raise ValueError("Give one number of categories per condition key, and inject='both' or 'decoder'.")
        if beta < 0 or free_bits < 0:
            raise ValueError(f"beta and free_bits must be >= 0, got {beta}, {free_bits}.")
        self.n_genes, self.n_latent, self.likelihood = n_genes, n_latent, likelihood
        self.beta, self.free_bits, self.objective, self.n_importance = beta, free_bits, objective, n_importance
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

    def _with_conditions(self, h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """Append the embedded conditions to h: (..., batch, d) -> (..., batch, d + n_c)."""
        if self.embed is None:
            return h
        if c is None:
            raise ValueError(f"This is a conditional VAE: pass the codes of {self.condition_keys} as c.")
        e = self.embed(c)
        return torch.cat([h, e.expand(*h.shape[:-1], e.shape[-1])], dim=-1)

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x, c). x: (batch, genes), c: (batch, n_keys) -> Normal over (batch, n_latent)."""
        h = x if self.likelihood == "gaussian" else torch.log1p(x)
        return self.encoder(self._with_conditions(h, c) if self.inject == "both" else h)

    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None,
               c: torch.Tensor | None = None) -> Distribution:
        """p(x | z, c). z: (..., batch, n_latent), library: (batch, 1), c: (batch, n_keys)
        -> distribution over (..., batch, genes)."""
        z = self._with_conditions(z, c)
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
    def elbo_terms(self, x: torch.Tensor, c: torch.Tensor | None = None,
                   per_dimension: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample ELBO terms per cell: (E_q log p(x|z,c), KL(q || p)), each (batch,).

        With ``per_dimension`` the KL keeps its latent axis: (batch, n_latent).
        """
        qz = self.encode(x, c)
        z = qz.rsample()                                                    # reparameterization trick
        px = self.decode(z, self.library(x), c)
        reconstruction = px.log_prob(x).sum(-1)
        kl = kl_divergence(qz, self.prior(x.shape[0], x.device))           # closed form, Gaussians
        return reconstruction, (kl if per_dimension else kl.sum(-1))

    def log_weights(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 1,
                    qz: Normal | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Log importance weights log w_k = log p(x|z_k,c) + log p(z_k) - log q(z_k|x,c), z_k ~ q.

        Reparameterized, so differentiable. ``eps`` (K, batch, n_latent) fixes the noise, z = mu + sigma * eps.
        x: (batch, genes) -> (K, batch).
        """
        qz = self.encode(x, c) if qz is None else qz
        if eps is None:
            z = qz.rsample((n_samples,))                                    # (K, batch, latent)
        else:
            z = qz.loc + qz.scale * eps
        prior = self.prior(x.shape[0], x.device)
        return (self.decode(z, self.library(x), c).log_prob(x).sum(-1)
                + prior.log_prob(z).sum(-1) - qz.log_prob(z).sum(-1))

    def kl_penalty(self, kl: torch.Tensor) -> torch.Tensor:
        """beta * KL, with free bits: sum_d max(lambda, mean_batch KL_d) (Kingma et al. 2016, eq. 15).

        kl: (batch, n_latent) -> scalar, the penalty per cell.
        """
        if self.free_bits > 0:
            return self.beta * kl.mean(0).clamp_min(self.free_bits).sum()
        return self.beta * kl.sum(-1).mean()

    def loss(self, batch: dict[str, torch.Tensor], kl_weight: float = 1.0) -> LossOutput:
        """The training objective, mean over the cells of the batch (negated, to minimize).

        "elbo": -(E_q log p(x|z,c) - kl_weight * beta * KL), kl_weight being the warm-up factor.
        "iwae": -(logsumexp_k log w_k - log K) (Burda et al. 2016, eq. 8); warm-up and beta do not apply.
        """
        x, c = batch["x"], self.conditions(batch)
        if self.objective == "iwae":
            bound = iwae_bound(self.log_weights(x, c, self.n_importance))
            return LossOutput(loss=-bound.mean(), terms={"iwae_bound": bound.mean().detach()})
        reconstruction, kl = self.elbo_terms(x, c, per_dimension=True)
        loss = -reconstruction.mean() + kl_weight * self.kl_penalty(kl)
        return LossOutput(loss=loss, reconstruction=-reconstruction.mean(), kl=kl.sum(-1).mean())

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """ELBO per cell (nats), one sample of z (beta = 1). x: (batch, genes) -> (batch,)."""
        reconstruction, kl = self.elbo_terms(x, c)
        return reconstruction - kl

    @torch.no_grad()
    def log_likelihood_is(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 100,
                          chunk: int = 50) -> torch.Tensor:
        """Importance-sampled log p(x) per cell with q(z|x) as proposal (Burda et al. 2016, eq. 8).

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,  z_k ~ q(z|x).
        x: (batch, genes) -> (batch,). Evaluated in chunks of samples to bound memory.
        """
        qz = self.encode(x, c)
        log_w = [self.log_weights(x, c, min(chunk, n_samples - start), qz=qz)
                 for start in range(0, n_samples, chunk)]
        return iwae_bound(torch.cat(log_w))

    # -- using the model -------------------------------------------------------------------------
    @torch.no_grad()
    def latent(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means E_q[z]. x: (batch, genes) -> (batch, n_latent)."""
        return self.encode(x, c).loc

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


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """The K-sample bound L_K = logsumexp_k log w_k - log K (Burda et al. 2016, eq. 8).

    log_weights: (K, batch) -> (batch,). L_1 is the one-sample ELBO; L_K rises to log p(x) as K grows.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


class LinearGaussianVAE(nn.Module):
    """The linear-Gaussian VAE, where log p(x) is exact: a check on every bound of the book.

        z ~ N(0, I_D),   x | z ~ N(W z + b, sigma^2 I_P)   =>   p(x) = N(b, W W^T + sigma^2 I_P)

    (probabilistic PCA, Tipping & Bishop 1999). The true posterior is Gaussian with covariance
    sigma^2 M^-1, M = W^T W + sigma^2 I, which is diagonal only when W has orthogonal columns. The
    encoder is amortized and linear, q(z | x) = N(A x + c, diag(s^2)) with s free per dimension,
    so the ELBO's gap is KL(q || p(z | x)) > 0 whenever the posterior is correlated.
    Same ``log_weights`` / ``loss`` interface as :class:`VAE` (``objective`` "elbo" or "iwae").
    """

    def __init__(self, n_features: int, n_latent: int, objective: str = "elbo", n_importance: int = 1):
        super().__init__()
        if objective not in OBJECTIVES or n_importance < 1:
            raise ValueError(f"objective must be one of {OBJECTIVES} and n_importance >= 1, "
                             f"got {objective!r}, {n_importance}.")
        self.n_features, self.n_latent = n_features, n_latent
        self.objective, self.n_importance = objective, n_importance
        self.W = nn.Parameter(torch.randn(n_features, n_latent) / math.sqrt(n_features))  # (P, D) loadings
        self.b = nn.Parameter(torch.zeros(n_features))                                     # (P,) mean
        self.log_sigma = nn.Parameter(torch.zeros(()))                                     # noise sd
        self.encoder = nn.Linear(n_features, n_latent)                                     # x -> A x + c
        self.log_s = nn.Parameter(torch.zeros(n_latent))                                   # posterior sd s

    def prior(self, n: int, device: torch.device | None = None) -> Normal:
        """p(z) = N(0, I): batch shape (n, n_latent)."""
        zeros = torch.zeros(n, self.n_latent, device=device or self.W.device)
        return Normal(zeros, torch.ones_like(zeros))

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x) = N(A x + c, diag s^2). x: (batch, P) -> Normal over (batch, D)."""
        loc = self.encoder(x)
        return Normal(loc, self.log_s.exp().expand_as(loc))

    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None, c: torch.Tensor | None = None) -> Normal:
        """p(x | z) = N(W z + b, sigma^2 I). z: (..., batch, D) -> Normal over (..., batch, P)."""
        mean = z @ self.W.T + self.b
        return Normal(mean, self.log_sigma.exp().expand_as(mean))

    def library(self, x: torch.Tensor) -> None:
        return None

    def log_weights(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 1,
                    qz: Normal | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q. x: (batch, P) -> (K, batch)."""
        qz = self.encode(x) if qz is None else qz
        z = qz.rsample((n_samples,)) if eps is None else qz.loc + qz.scale * eps   # (K, batch, D)
        return (self.decode(z).log_prob(x).sum(-1) + self.prior(x.shape[0], x.device).log_prob(z).sum(-1)
                - qz.log_prob(z).sum(-1))

    def loss(self, batch: dict[str, torch.Tensor], kl_weight: float = 1.0) -> LossOutput:
        """Negative ELBO (closed-form KL, weighted by ``kl_weight``) or negative K-sample bound, per cell."""
        x = batch["x"]
        if self.objective == "iwae":
            bound = iwae_bound(self.log_weights(x, n_samples=self.n_importance))
            return LossOutput(loss=-bound.mean(), terms={"iwae_bound": bound.mean().detach()})
        qz = self.encode(x)
        reconstruction = self.decode(qz.rsample()).log_prob(x).sum(-1)                   # (batch,)
        kl = kl_divergence(qz, self.prior(x.shape[0], x.device)).sum(-1)                  # (batch,)
        return LossOutput(loss=-(reconstruction - kl_weight * kl).mean(),
                          reconstruction=-reconstruction.mean(), kl=kl.mean())

    def marginal(self) -> torch.distributions.MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I): the exact marginal, a MultivariateNormal over (P,)."""
        cov = self.W @ self.W.T + self.log_sigma.exp() ** 2 * torch.eye(self.n_features, device=self.W.device)
        return torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in closed form. x: (batch, P) -> (batch,)."""
        return self.marginal().log_prob(x)

    def exact_posterior(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """p(z | x) = N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I. x: (batch, P)."""
        s2 = self.log_sigma.exp() ** 2
        M = self.W.T @ self.W + s2 * torch.eye(self.n_latent, device=self.W.device)
        mean = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T                        # (batch, D)
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=s2 * torch.linalg.inv(M))

    @torch.no_grad()
    def set_mean_field_encoder(self) -> None:
        """Set q to the best diagonal Gaussian for the current decoder: the exact posterior mean and
        variances 1 / diag(posterior precision), the minimizer of KL(q || p(z | x)) over diagonal q."""
        s2 = self.log_sigma.exp() ** 2
        M = self.W.T @ self.W + s2 * torch.eye(self.n_latent, device=self.W.device)
        A = torch.linalg.solve(M, self.W.T)                                               # (D, P)
        self.encoder.weight.copy_(A)
        self.encoder.bias.copy_(-A @ self.b)
        self.log_s.copy_(0.5 * torch.log(s2 / torch.diagonal(M)))

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """One-sample ELBO per row. x: (batch, P) -> (batch,)."""
        return self.log_weights(x, n_samples=1)[0]

    @torch.no_grad()
    def log_likelihood_is(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 100,
                          chunk: int = 500) -> torch.Tensor:
        """The K-sample bound with K = ``n_samples`` (as :meth:`VAE.log_likelihood_is`). x: (batch, P) -> (batch,)."""
        qz = self.encode(x)
        log_w = [self.log_weights(x, n_samples=min(chunk, n_samples - start), qz=qz)
                 for start in range(0, n_samples, chunk)]
        return iwae_bound(torch.cat(log_w))
