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

import math

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Gamma, Poisson, constraints

__all__ = ["NegativeBinomial", "ZeroInflatedNegativeBinomial", "Poisson", "THETA_MAX", "THETA_MIN", "bounded_theta", "log_nb",
           "log_zinb"]


LARGE_THETA = 10.0   # above it, lgamma(x + theta) - lgamma(theta) is taken from Stirling's series


THETA_MIN, THETA_MAX = 1e-4, 1e6   # inverse dispersion bounds: beyond 1e6 a gene is Poisson to float precision


def bounded_theta(log_theta: torch.Tensor) -> torch.Tensor:
    """theta = exp(log_theta) kept in [THETA_MIN, THETA_MAX], the NB inverse dispersion a model learns per gene."""
    return log_theta.clamp(math.log(THETA_MIN), math.log(THETA_MAX)).exp()


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
    ``x log mu`` is taken with 1 added to mu where x = 0, so that a zero count at mu = 0 has
    log p = 0 and a finite gradient (0 * log 0 would give NaN in both).
    """
    if theta.device.type == "cpu":                                 # host checks are free on the CPU
        large = theta > LARGE_THETA
        if not bool(large.any()):
            return _log_nb_direct(x, mu, theta)
        if theta.dim() == 1:                                       # per-gene theta: each form on its genes
            return _log_nb_per_gene(x, mu, theta, large)
    small = theta <= LARGE_THETA                                   # elementwise choice, no host sync (GPU)
    direct = _log_nb_direct(x, mu, torch.where(small, theta, LARGE_THETA))     # each form sees safe values
    stable = _log_nb_stable(x, mu, torch.where(small, 2 * LARGE_THETA, theta))
    return torch.where(small, direct, stable)


def _x_log_mu(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """x log mu, 0 where x = 0 (also at mu = 0, with a finite gradient: 0 * log 0 would give NaN).

    mu + (x == 0) adds 1 exactly where the product is multiplied by 0 anyway (3x cheaper than torch.where).
    """
    return x * torch.log(mu + (x == 0))


def _log_nb_direct(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The textbook form (scVI's log_nb_positive), accurate in float32 for theta <= LARGE_THETA:

        x log mu - (x + theta) log(theta + mu) + lgamma(x + theta) + [theta log theta - lgamma(theta)] - lgamma(x + 1)

    grouped so that each full-size intermediate is computed once (x + theta feeds two terms; the bracket is
    per gene when theta is).
    """
    x_theta = x + theta
    per_gene = torch.xlogy(theta, theta) - torch.lgamma(theta)
    return (_x_log_mu(x, mu) - x_theta * torch.log(theta + mu) + torch.lgamma(x_theta) + per_gene
            - torch.lgamma(x + 1.0))


def _log_nb_stable(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Poisson part + B(x, mu, theta) in Loader's saddle-point form; accurate for theta > LARGE_THETA."""
    poisson = _x_log_mu(x, mu) - mu - torch.lgamma(x + 1.0)
    delta = (x - mu) / (theta + mu)
    excess = (theta + mu) * _phi(delta) - 0.5 * torch.log1p(x / theta) + _stirling_tail(theta + x) \
        - _stirling_tail(theta)
    return poisson + excess


def _log_nb_per_gene(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
    """Each form on its own genes (last axis), so that no element is computed twice. theta, large: (genes,)."""
    small_genes, large_genes = (~large).nonzero().squeeze(1), large.nonzero().squeeze(1)
    order = torch.cat([small_genes, large_genes])

    def genes(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return a.index_select(-1, index) if a.shape[-1] > 1 else a

    parts = [_log_nb_direct(genes(x, small_genes), genes(mu, small_genes), theta[small_genes]),
             _log_nb_stable(genes(x, large_genes), genes(mu, large_genes), theta[large_genes])]
    return torch.cat(parts, dim=-1).index_select(-1, torch.argsort(order))


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
        self.mu, self.theta = torch.as_tensor(mu), torch.as_tensor(theta)   # theta stays (genes,): lgamma(theta)
        super().__init__(batch_shape=self._shape(), validate_args=validate_args)    # is computed once per gene

    def _shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.mu.shape, self.theta.shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.mu.expand(self.batch_shape)

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
        mu, theta = self.mu.expand(self.batch_shape), self.theta.expand(self.batch_shape)
        rate = Gamma(theta, theta / mu).sample(sample_shape)
        return torch.poisson(rate.clamp(max=1e8))


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """NB mixed with a point mass at zero of probability ``sigmoid(zi_logits)``."""

    arg_constraints = {"mu": constraints.positive, "theta": constraints.positive, "zi_logits": constraints.real}

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor,
                 validate_args: bool | None = None):
        self.zi_logits = torch.as_tensor(zi_logits)
        super().__init__(mu, theta, validate_args=validate_args)

    def _shape(self) -> torch.Size:
        return torch.broadcast_shapes(super()._shape(), self.zi_logits.shape)

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
