"""The exact score of a Gaussian mixture and of its Gaussian-smoothed versions: a known target for score matching.

A mixture p(x) = sum_k pi_k N(x; mu_k, S_k) smoothed by Gaussian noise of scale sigma (x~ = x + sigma z) is again a
mixture, with the covariances widened:

    q_sigma(x) = sum_k pi_k N(x; mu_k, S_k + sigma^2 I),

so its score is closed form (the responsibility-weighted scores of the components):

    grad_x log q_sigma(x) = - sum_k r_k(x) (S_k + sigma^2 I)^{-1} (x - mu_k),
    r_k(x) = pi_k N(x; mu_k, S_k + sigma^2 I) / q_sigma(x).

Chapter 6 fits such a mixture to the first principal components of PBMC cells (sklearn's ``GaussianMixture``) and
uses it as ground truth: the score every score-matching objective is trying to learn, at every noise level sigma.
"""
from __future__ import annotations

import math

import torch

__all__ = ["GaussianMixtureScore"]


class GaussianMixtureScore:
    """A Gaussian mixture with full covariances and its exact smoothed log-density, score and samples.

    weights: (K,) summing to 1; means: (K, d); covariances: (K, d, d) symmetric positive definite.
    Computations run in float64; inputs x: (n, d) of any float dtype, outputs in x's dtype.
    """

    def __init__(self, weights, means, covariances):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covariances = torch.as_tensor(covariances, dtype=torch.float64)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d, d):
            raise ValueError(f"Expected weights (K,), means (K, d), covariances (K, d, d); got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.covariances.shape)}.")
        if (self.weights < 0).any() or not math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-6):
            raise ValueError(f"The weights must be >= 0 and sum to 1, got sum {float(self.weights.sum())}.")

    @classmethod
    def from_sklearn(cls, gmm) -> "GaussianMixtureScore":
        """From a fitted ``sklearn.mixture.GaussianMixture`` with ``covariance_type="full"``."""
        if getattr(gmm, "covariance_type", None) != "full":
            raise ValueError(f"Need covariance_type='full', got {getattr(gmm, 'covariance_type', None)!r}.")
        return cls(gmm.weights_, gmm.means_, gmm.covariances_)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def _smoothed(self, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Cholesky factors (K, d, d) of S_k + sigma^2 I and their log-determinants (K,)."""
        cov = self.covariances + float(sigma) ** 2 * torch.eye(self.dim, dtype=torch.float64)
        chol = torch.linalg.cholesky(cov)
        return chol, 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)

    def _component_terms(self, x: torch.Tensor, sigma: float):
        """log pi_k N(x; mu_k, S_k + sigma^2 I): (n, K), and the whitened residuals' solves (n, K, d)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"Expected x of shape (n, {self.dim}), got {tuple(x.shape)}.")
        chol, logdet = self._smoothed(sigma)
        diff = x[:, None, :] - self.means[None]                                       # (n, K, d)
        white = torch.linalg.solve_triangular(chol[None], diff[..., None], upper=False)[..., 0]   # L^{-1} (x - mu)
        log_comp = (torch.log(self.weights)[None] - 0.5 * (white ** 2).sum(-1)
                    - 0.5 * logdet[None] - 0.5 * self.dim * math.log(2 * math.pi))     # (n, K)
        precision_diff = torch.cholesky_solve(diff[..., None], chol[None])[..., 0]     # (S + s^2 I)^{-1} (x - mu)
        return log_comp, precision_diff

    def log_prob(self, x, sigma: float = 0.0) -> torch.Tensor:
        """log q_sigma(x): (n,)."""
        log_comp, _ = self._component_terms(x, sigma)
        return torch.logsumexp(log_comp, -1).to(torch.as_tensor(x).dtype)

    def responsibilities(self, x, sigma: float = 0.0) -> torch.Tensor:
        """r_k(x) under q_sigma: (n, K), rows summing to 1."""
        log_comp, _ = self._component_terms(x, sigma)
        return torch.softmax(log_comp, -1).to(torch.as_tensor(x).dtype)

    def score(self, x, sigma: float = 0.0) -> torch.Tensor:
        """grad_x log q_sigma(x) = - sum_k r_k(x) (S_k + sigma^2 I)^{-1} (x - mu_k): (n, d)."""
        log_comp, precision_diff = self._component_terms(x, sigma)
        r = torch.softmax(log_comp, -1)                                                # (n, K)
        return -(r[..., None] * precision_diff).sum(1).to(torch.as_tensor(x).dtype)

    def sample(self, n: int, sigma: float = 0.0, generator: torch.Generator | None = None,
               return_components: bool = False):
        """n draws from q_sigma: (n, d) float32 (and their components (n,) if return_components)."""
        chol, _ = self._smoothed(sigma)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        x = self.means[comp] + (chol[comp] @ z[..., None])[..., 0]
        x = x.to(torch.float32)
        return (x, comp) if return_components else x
