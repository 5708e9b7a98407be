"""The linear-Gaussian VAE (probabilistic PCA), where log p(x) is exact: a check on every bound of the book."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

from .base import LatentVariableModel


class LinearGaussianVAE(LatentVariableModel):
    """The linear-Gaussian VAE, where log p(x) is exact: a check on every bound of the book.

        z ~ N(0, I_D),   x | z ~ N(W z + b, sigma^2 I_P)   =>   p(x) = N(b, W W^T + sigma^2 I_P)

    (probabilistic PCA, Tipping & Bishop 1999). The true posterior is Gaussian with covariance
    sigma^2 M^-1, M = W^T W + sigma^2 I, which is diagonal only when W has orthogonal columns. The
    encoder is amortized and linear, q(z | x) = N(A x + c, diag(s^2)) with s free per dimension,
    so the ELBO's gap is KL(q || p(z | x)) > 0 whenever the posterior is correlated.
    The objectives are those of every :class:`LatentVariableModel` (``objective`` "elbo" or "iwae").
    """

    def __init__(self, n_features: int, n_latent: int, objective: str = "elbo", n_importance: int = 1,
                 kl_warmup_steps: int = 0):
        super().__init__(n_latent, objective, n_importance, kl_warmup_steps=kl_warmup_steps)
        self.n_features = n_features
        self.W = nn.Parameter(torch.randn(n_features, n_latent) / math.sqrt(n_features))  # (P, D) loadings
        self.b = nn.Parameter(torch.zeros(n_features))                                     # (P,) mean
        self.log_sigma = nn.Parameter(torch.zeros(()))                                     # noise sd
        self.encoder = nn.Linear(n_features, n_latent)                                     # x -> A x + c
        self.log_s = nn.Parameter(torch.zeros(n_latent))                                   # posterior sd s

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x) = N(A x + c, diag s^2). x: (batch, P) -> Normal over (batch, D)."""
        loc = self.encoder(x)
        return Normal(loc, self.log_s.exp().expand_as(loc))

    def decode(self, z: torch.Tensor, library: torch.Tensor | None = None, c: torch.Tensor | None = None) -> Normal:
        """p(x | z) = N(W z + b, sigma^2 I). z: (..., batch, D) -> Normal over (..., batch, P)."""
        mean = z @ self.W.T + self.b
        return Normal(mean, self.log_sigma.exp().expand_as(mean))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"encoder": A, c, s; "decoder": W, b, sigma}."""
        return {"encoder": [*self.encoder.parameters(), self.log_s], "decoder": [self.W, self.b, self.log_sigma]}

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
