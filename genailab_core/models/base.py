"""What every model of the book shares: the ``LossOutput`` that ``fit()`` reads, and the latent-variable
base class behind the VAE family (prior, importance weights, ELBO, K-sample bound, KL warm-up).

A model owns ``loss(batch, step=None) -> LossOutput``: ``step`` is the optimizer step during training
(schedules such as KL warm-up read it) and None when evaluating, where the model returns its true
objective. ``fit()`` knows nothing else about it.
"""
from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, Normal, kl_divergence

OBJECTIVES = ("elbo", "iwae")


@dataclass
class LossOutput:
    """What ``model.loss(batch, step)`` returns: the scalar to minimize and its named terms.

    loss: () tensor, the mean over the cells of the batch; terms: name -> () tensor, logged by ``fit``
    (e.g. ``reconstruction``, ``kl``), each a mean per cell.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The loss and its terms as floats (one device synchronisation each; for logging outside ``fit``)."""
        return {"loss": float(self.loss.detach()), **{k: float(v.detach()) for k, v in self.terms.items()}}


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """The K-sample bound L_K = logsumexp_k log w_k - log K (Burda et al. 2016, eq. 8).

    log_weights: (K, batch) -> (batch,). L_1 is the one-sample ELBO; L_K rises to log p(x) as K grows.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


class LatentVariableModel(nn.Module, metaclass=ABCMeta):
    """p(x, z | c) = p(z) p(x | z, c) with an amortized Gaussian posterior q(z | x, c) and prior N(0, I).

    Subclasses define ``encode(x, c) -> Normal`` and ``decode(z, library, c) -> Distribution``; this class
    gives the objectives. ``objective`` "elbo" maximizes E_q log p(x|z,c) - w * beta * KL(q || p), with
    free bits ``free_bits`` (Kingma et al. 2016, eq. 15) and a KL weight w that rises linearly from 0 to 1
    over ``kl_warmup_steps`` optimizer steps (Bowman et al. 2016; Sonderby et al. 2016); "iwae" maximizes
    the K-sample bound with K = ``n_importance`` (Burda et al. 2016), to which beta, free bits and
    warm-up do not apply.
    """

    def __init__(self, n_latent: int, objective: str = "elbo", n_importance: int = 1, beta: float = 1.0,
                 free_bits: float = 0.0, kl_warmup_steps: int = 0):
        super().__init__()
        if objective not in OBJECTIVES or n_importance < 1:
            raise ValueError(f"objective must be one of {OBJECTIVES} and n_importance >= 1, "
                             f"got {objective!r}, {n_importance}.")
        if beta < 0 or free_bits < 0 or kl_warmup_steps < 0:
            raise ValueError(f"beta, free_bits and kl_warmup_steps must be >= 0, got {beta}, {free_bits}, "
                             f"{kl_warmup_steps}.")
        if objective == "iwae" and (beta != 1 or free_bits > 0 or kl_warmup_steps > 0):
            raise ValueError("The IWAE bound has no separate KL term, so beta, free_bits and KL warm-up do not "
                             f"apply (got beta={beta}, free_bits={free_bits}, kl_warmup_steps={kl_warmup_steps}). "
                             "Use objective='elbo' for them, or leave them at 1, 0 and 0.")
        self.n_latent, self.objective, self.n_importance = n_latent, objective, n_importance
        self.beta, self.free_bits, self.kl_warmup_steps = beta, free_bits, kl_warmup_steps

    # -- what a subclass defines ----------------------------------------------------------------
    @abstractmethod
    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x, c): x (batch, features) -> Normal over (batch, n_latent)."""

    @abstractmethod
    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None,
               c: torch.Tensor | None = None) -> Distribution:
        """p(x | z, c): z (..., batch, n_latent) -> distribution over (..., batch, features)."""

    def library(self, x: torch.Tensor) -> torch.Tensor | None:
        """The size factor the decoder is offset by (None: no offset)."""
        return None

    def conditions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The condition codes of a batch (None: an unconditional model)."""
        return None

    # -- the generative model ---------------------------------------------------------------------
    def prior(self, n: int, device: torch.device | None = None) -> Normal:
        """p(z) = N(0, I). Returns a Normal with batch shape (n, n_latent)."""
        device = device if device is not None else next(self.parameters()).device
        zeros = torch.zeros(n, self.n_latent, device=device)
        return Normal(zeros, torch.ones_like(zeros))

    def log_weights(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 1,
                    qz: Normal | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Log importance weights log w_k = log p(x|z_k,c) + log p(z_k) - log q(z_k|x,c), z_k ~ q.

        Reparameterized, so differentiable. ``eps`` (K, batch, n_latent) fixes the noise, z = mu + sigma * eps.
        x: (batch, features) -> (K, batch).
        """
        qz = self.encode(x, c) if qz is None else qz
        z = qz.rsample((n_samples,)) if eps is None else qz.loc + qz.scale * eps      # (K, batch, latent)
        prior = self.prior(x.shape[0], x.device)
        return (self.decode(z, self.library(x), c).log_prob(x).sum(-1)
                + prior.log_prob(z).sum(-1) - qz.log_prob(z).sum(-1))

    def elbo_terms(self, x: torch.Tensor, c: torch.Tensor | None = None,
                   per_dimension: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample ELBO terms per cell: (E_q log p(x|z,c), KL(q || p)), each (batch,).

        With ``per_dimension`` the KL keeps its latent axis: (batch, n_latent).
        """
        qz = self.encode(x, c)
        z = qz.rsample()                                                    # reparameterization trick
        reconstruction = self.decode(z, self.library(x), c).log_prob(x).sum(-1)
        kl = kl_divergence(qz, self.prior(x.shape[0], x.device))           # closed form, Gaussians
        return reconstruction, (kl if per_dimension else kl.sum(-1))

    def kl_weight(self, step: int | None) -> float:
        """The warm-up factor w at optimizer ``step``: step / kl_warmup_steps, capped at 1; 1 when evaluating."""
        if step is None or self.kl_warmup_steps <= 0:
            return 1.0
        return min(1.0, step / self.kl_warmup_steps)

    def kl_penalty(self, kl: torch.Tensor) -> torch.Tensor:
        """beta * KL, with free bits: sum_d max(lambda, mean_batch KL_d) (Kingma et al. 2016, eq. 15).

        kl: (batch, n_latent) -> scalar, the penalty per cell.
        """
        if self.free_bits > 0:
            return self.beta * kl.mean(0).clamp_min(self.free_bits).sum()
        return self.beta * kl.sum(-1).mean()

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """The training objective, mean over the cells of the batch (negated, to minimize).

        "elbo": -(E_q log p(x|z,c) - w * beta * KL) with w = ``kl_weight(step)``; with ``step=None`` (evaluation)
        w = 1. "iwae": -(logsumexp_k log w_k - log K) (Burda et al. 2016, eq. 8).
        """
        x, c = batch["x"], self.conditions(batch)
        if self.objective == "iwae":
            bound = iwae_bound(self.log_weights(x, c, self.n_importance))
            return LossOutput(loss=-bound.mean(), terms={"iwae_bound": bound.mean().detach()})
        reconstruction, kl = self.elbo_terms(x, c, per_dimension=True)
        weight = self.kl_weight(step)
        loss = -reconstruction.mean() + weight * self.kl_penalty(kl)
        return LossOutput(loss=loss, terms={"reconstruction": -reconstruction.mean().detach(),
                                            "kl": kl.sum(-1).mean().detach(),
                                            "kl_weight": torch.full((), weight, device=x.device)})

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def elbo(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """ELBO per cell (nats), one sample of z (beta = 1). x: (batch, features) -> (batch,)."""
        reconstruction, kl = self.elbo_terms(x, c)
        return reconstruction - kl

    @torch.no_grad()
    def log_likelihood_is(self, x: torch.Tensor, c: torch.Tensor | None = None, n_samples: int = 100,
                          chunk: int = 50) -> torch.Tensor:
        """Importance-sampled log p(x) per cell with q(z|x) as proposal (Burda et al. 2016, eq. 8).

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,  z_k ~ q(z|x).
        x: (batch, features) -> (batch,). Evaluated in chunks of samples to bound memory.
        """
        qz = self.encode(x, c)
        log_w = [self.log_weights(x, c, min(chunk, n_samples - start), qz=qz)
                 for start in range(0, n_samples, chunk)]
        return iwae_bound(torch.cat(log_w))

    @torch.no_grad()
    def latent(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means E_q[z]. x: (batch, features) -> (batch, n_latent)."""
        return self.encode(x, c).loc

    @torch.no_grad()
    def latent_representation(self, adata, layer: str | None = None, key: str | None = None,
                              batch_size: int = 1024) -> np.ndarray:
        """Posterior means of every cell of ``adata``, (cells, n_latent) (scvi-tools' get_latent_representation).

        Also written to ``adata.obsm[key]``, default ``"X_" + class name`` (``X_vae``), the scverse convention,
        so that ``sc.pp.neighbors(adata, use_rep="X_vae")`` works. ``layer``: the input the model was trained
        on, if not ``.X``. Condition columns must be categoricals with the categories the model was trained with.
        """
        from ..data.loaders import CountBatches

        self.eval()
        device = next(self.parameters()).device
        keys = getattr(self, "condition_keys", ())
        batches = CountBatches(adata, batch_size=batch_size, shuffle=False, layer=layer, condition_keys=keys,
                               device=device)
        means = torch.cat([self.latent(b["x"], self.conditions(b)) for b in batches]).cpu().numpy()
        adata.obsm[key or f"X_{type(self).__name__.lower()}"] = means
        return means
