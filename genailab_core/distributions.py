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


LARGE_THETA = 10.0   # above it, lgamma(x + theta) - lgamma(theta) is taken from Stirling's series


def log_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mu, theta), elementwise. Shapes broadcast, e.g. x, mu: (cells, genes), theta: (genes,).

        log p = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta log(theta / (theta + mu))
                + x log(mu / (theta + mu))
              = [x log mu - mu - lgamma(x + 1)]  +  B(x, mu, theta)          (Poisson part + NB excess)

    Written naively, B's terms grow as theta log theta (1.4e7 at theta = 1e6) and cancel to a few nats,
    which float32 cannot resolve (0.8 nats off at theta = 1e6). For theta > ``LARGE_THETA`` the excess
    is instead written without any large term (Stirling's series for the lgamma difference):

        B = (theta + mu) phi(delta) - log1p(x / theta) / 2 + s(theta + x) - s(theta),
        delta = (x - mu) / (theta + mu),  phi(d) = (1 + d) log1p(d) - d,  s(z) = 1/(12 z) - 1/(360 z^3)

    (the saddle-point form of Loader 2000, used by R's dnbinom_mu). B -> 0 as theta -> inf: the Poisson.
    What float32 cannot avoid is the Poisson part's rounding, ~1e-7 of x log x (tests/test_distributions.py
    checks float32 against scipy.stats.nbinom within that over theta in [1e-3, 1e6], counts up to 1e4).
    ``x log mu`` is taken with mu replaced by 1 where x = 0, so that a zero count at mu = 0 has
    log p = 0 and a finite gradient (0 * log 0 would give NaN in both).
    """
    x_log_mu = x * torch.log(torch.where(x > 0, mu, 1.0))
    poisson = x_log_mu - mu - torch.lgamma(x + 1.0)
    small = theta <= LARGE_THETA
    t = torch.where(small, theta, torch.full_like(theta, LARGE_THETA))     # each branch sees safe values
    naive = (torch.lgamma(x + t) - torch.lgamma(t) - x * torch.log(t + mu) - t * torch.log1p(mu / t) + mu)
    if theta.device.type == "cpu" and not bool((~small).any()):    # no large theta: skip the second form
        return poisson + naive                                      # (a free check on CPU; a sync on GPU)
    t = torch.where(small, torch.full_like(theta, 2 * LARGE_THETA), theta)
    delta = (x - mu) / (t + mu)
    stable = (t + mu) * _phi(delta) - 0.5 * torch.log1p(x / t) + _stirling_tail(t + x) - _stirling_tail(t)
    return poisson + torch.where(small, naive, stable)


def _phi(d: torch.Tensor) -> torch.Tensor:
    """phi(d) = (1 + d) log1p(d) - d >= 0 for d > -1 (Loader's bd0 per unit of theta + mu). It cancels to
    ~d^2 / 2, so its absolute error times (theta + mu) stays ~1e-7 |x - mu|: below the Poisson part's."""
    return (1 + d) * torch.log1p(d) - d


def _stirling_tail(z: torch.Tensor) -> torch.Tensor:
    """lgamma(z) - [(z - 1/2) log z - z + log(2 pi) / 2] ~= 1/(12 z) - 1/(360 z^3) (+ O(z^-5); < 1e-9 at z > 10)."""
    inv = 1.0 / z
    return inv * (1 / 12 - inv * inv / 360)


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
