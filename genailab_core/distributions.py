"""Count likelihoods for gene expression, as ``torch.distributions`` objects.

Parameterization follows scVI (Lopez et al. 2018): a mean ``mu > 0`` and an *inverse*
dispersion ``theta > 0``, so that ``Var[x] = mu + mu**2 / theta``. ``theta -> inf`` recovers
the Poisson; ``theta -> 0`` gives an ever more overdispersed (bursty) gene. The zero-inflated
NB mixes a point mass at zero with probability ``pi = sigmoid(zi_logits)``.

The log-probabilities are pure functions (``log_nb``, ``log_zinb``) written to stay finite
for zeros, large counts, and very small or very large ``theta``; the distribution classes
wrap them so a loss reads ``-px.log_prob(x).sum(-1)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Gamma, Poisson, constraints

__all__ = ["NegativeBinomial", "ZeroInflatedNegativeBinomial", "Poisson", "log_nb", "log_zinb"]


def log_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mu, theta), elementwise. Shapes broadcast, e.g. x, mu: (cells, genes), theta: (genes,).

    log p = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
            + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))
    The first ratio is written ``-log1p(mu / theta)`` so it stays accurate as theta -> inf.
    """
    log_theta_mu = torch.log(theta + mu)
    return (
        torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0)
        - theta * torch.log1p(mu / theta)
        + x * (torch.log(mu) - log_theta_mu)
    )


def log_zinb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor) -> torch.Tensor:
    """log ZINB(x; mu, theta, pi = sigmoid(zi_logits)), elementwise.

    p(0) = pi + (1 - pi) NB(0),   p(x > 0) = (1 - pi) NB(x).
    log pi = -softplus(-logits), log(1 - pi) = -softplus(logits) avoid log(0).
    """
    log_pi = -F.softplus(-zi_logits)
    log_one_minus_pi = -F.softplus(zi_logits)
    nb = log_nb(x, mu, theta)
    zero = torch.logaddexp(log_pi, log_one_minus_pi + nb)
    return torch.where(x < 0.5, zero, log_one_minus_pi + nb)


class _CountDistribution(Distribution):
    """Shared support check with a message that says what to do."""

    support = constraints.nonnegative_integer

    def _validate_sample(self, value: torch.Tensor) -> None:
        bad = ~torch.isfinite(value)
        if bad.any():
            raise ValueError(f"{type(self).__name__}.log_prob got {int(bad.sum())} NaN/Inf values; "
                             "remove or impute them before computing a likelihood.")
        if (value < 0).any() or (value != torch.round(value)).any():
            raise ValueError(f"{type(self).__name__} is a distribution over counts but got non-integer or "
                             "negative values (is this log-normalized data?). Pass the raw integer counts, "
                             "e.g. adata.layers['counts'] or the .X of a genailab_core loader.")


class NegativeBinomial(_CountDistribution):
    """Negative binomial with mean ``mu`` and inverse dispersion ``theta`` (Gamma-Poisson mixture).

    mu: (..., genes) > 0;  theta: broadcastable to mu, > 0.
    """

    arg_constraints = {"mu": constraints.positive, "theta": constraints.positive}

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, validate_args: bool | None = None):
        self.mu, self.theta = torch.broadcast_tensors(torch.as_tensor(mu), torch.as_tensor(theta))
        super().__init__(batch_shape=self.mu.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @property
    def variance(self) -> torch.Tensor:
        return self.mu + self.mu ** 2 / self.theta

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return log_nb(value, self.mu, self.theta)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Gamma-Poisson: lambda ~ Gamma(theta, rate=theta/mu), x ~ Poisson(lambda)."""
        rate = Gamma(self.theta, self.theta / self.mu).sample(sample_shape)
        return torch.poisson(rate.clamp(max=1e8))


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """NB mixed with a point mass at zero of probability ``sigmoid(zi_logits)``."""

    arg_constraints = {"mu": constraints.positive, "theta": constraints.positive, "zi_logits": constraints.real}

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor,
                 validate_args: bool | None = None):
        mu, theta, zi_logits = torch.broadcast_tensors(torch.as_tensor(mu), torch.as_tensor(theta),
                                                       torch.as_tensor(zi_logits))
        self.zi_logits = zi_logits
        super().__init__(mu, theta, validate_args=validate_args)

    @property
    def zi_probs(self) -> torch.Tensor:
        return torch.sigmoid(self.zi_logits)

    @property
    def mean(self) -> torch.Tensor:
        return (1 - self.zi_probs) * self.mu

    @property
    def variance(self) -> torch.Tensor:
        pi = self.zi_probs
        return (1 - pi) * (self.mu + self.mu ** 2 / self.theta) + pi * (1 - pi) * self.mu ** 2

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return log_zinb(value, self.mu, self.theta, self.zi_logits)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        counts = super().sample(sample_shape)
        dropped = torch.bernoulli(self.zi_probs.expand_as(counts)).bool()
        return counts.masked_fill(dropped, 0.0)
