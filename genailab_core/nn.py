"""Networks: they map tensors to tensors (or to distributions) and know nothing of losses."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Normal


class MLP(nn.Sequential):
    """Linear -> norm -> activation -> dropout, ``n_layers`` times; then an optional output layer.

    x: (batch, n_in) -> (batch, n_out). ``norm`` is "batch" (as in scVI), "layer" or None.
    """

    def __init__(self, n_in: int, n_out: int, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.0, norm: str | None = "batch", activation: type[nn.Module] = nn.ReLU,
                 output_layer: bool = True):
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(n_layers):
            layers.append(nn.Linear(width, n_hidden))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(n_hidden, momentum=0.01, eps=1e-3))
            elif norm == "layer":
                layers.append(nn.LayerNorm(n_hidden))
            elif norm is not None:
                raise ValueError(f"norm must be 'batch', 'layer' or None, got {norm!r}.")
            layers += [activation(), nn.Dropout(dropout)] if dropout > 0 else [activation()]
            width = n_hidden
        if output_layer:
            layers.append(nn.Linear(width, n_out))
        super().__init__(*layers)


class GaussianEncoder(nn.Module):
    """q(z | x) = N(mu(x), diag sigma(x)^2): the amortized posterior of a VAE (Kingma & Welling 2014).

    x: (batch, n_in) -> Normal with loc, scale: (batch, n_latent).
    """

    def __init__(self, n_in: int, n_latent: int, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.1, norm: str | None = "batch"):
        super().__init__()
        self.body = MLP(n_in, n_hidden, n_hidden, n_layers, dropout, norm, output_layer=False)
        self.loc = nn.Linear(n_hidden, n_latent)
        self.log_var = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor) -> Normal:
        h = self.body(x)
        scale = torch.exp(0.5 * self.log_var(h).clamp(-15.0, 15.0)) + 1e-4  # floor keeps log q finite
        return Normal(self.loc(h), scale)


class CountDecoder(nn.Module):
    """z -> per-gene expression proportions rho(z) (softmax), and ZINB dropout logits.

    The NB mean is ``mu = library * rho(z)`` (the library-size offset of scVI, Lopez et al. 2018):
    the network models composition, the observed library size carries sequencing depth.
    z: (batch, n_latent) -> rho: (batch, n_genes), zi_logits: (batch, n_genes) or None.
    """

    def __init__(self, n_latent: int, n_genes: int, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.0, norm: str | None = "batch", zero_inflated: bool = False):
        super().__init__()
        self.body = MLP(n_latent, n_hidden, n_hidden, n_layers, dropout, norm, output_layer=False)
        self.rho_logits = nn.Linear(n_hidden, n_genes)
        self.zi_logits = nn.Linear(n_hidden, n_genes) if zero_inflated else None

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.body(z)
        rho = torch.softmax(self.rho_logits(h), dim=-1)
        return rho, (self.zi_logits(h) if self.zi_logits is not None else None)


class GaussianDecoder(nn.Module):
    """z -> mean of log-normalized expression; the per-gene scale is a free parameter.

    z: (batch, n_latent) -> mean: (batch, n_genes).
    """

    def __init__(self, n_latent: int, n_genes: int, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.0, norm: str | None = "batch"):
        super().__init__()
        self.net = MLP(n_latent, n_genes, n_hidden, n_layers, dropout, norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConditionEmbedding(nn.Module):
    """Categorical conditions (cell type, stimulation, donor, ...) -> one vector per cell.

    Each condition key is either one-hot encoded (``dim=None``, the CVAE of Sohn et al. 2015 and
    scVI's batch covariate) or looked up in a learned table of ``dim``-vectors; the keys are
    concatenated. codes: (batch, n_keys) long -> (batch, n_out).
    """

    def __init__(self, n_categories: Sequence[int], dim: int | None = None):
        super().__init__()
        self.n_categories, self.dim = list(n_categories), dim
        self.tables = nn.ModuleList([nn.Embedding(n, dim) for n in self.n_categories]) if dim else None
        self.n_out = len(self.n_categories) * dim if dim else sum(self.n_categories)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.shape[-1] != len(self.n_categories):
            raise ValueError(f"Expected codes for {len(self.n_categories)} condition keys, got {codes.shape[-1]}.")
        for k, n in enumerate(self.n_categories):
            if codes.numel() and (codes[:, k].min() < 0 or codes[:, k].max() >= n):
                raise ValueError(f"Condition {k} has codes outside 0..{n - 1}: a category the model never saw.")
        if self.tables is not None:
            return torch.cat([table(codes[:, k]) for k, table in enumerate(self.tables)], dim=-1)
        return torch.cat([nn.functional.one_hot(codes[:, k], n).float()
                          for k, n in enumerate(self.n_categories)], dim=-1)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer / DDPM time embedding (Vaswani et al. 2017; Ho et al. 2020).

    t: (batch,) real-valued times -> (batch, dim) of [cos(t w_k), sin(t w_k)], w_k = max_period^(-k/half).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): h * (1 + gamma(c)) + beta(c).

    The projection is zero-initialized, so the block starts as the identity.
    h: (batch, n_features), c: (batch, n_cond) -> (batch, n_features).
    """

    def __init__(self, n_cond: int, n_features: int):
        super().__init__()
        self.proj = nn.Linear(n_cond, 2 * n_features)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(c).chunk(2, dim=-1)
        return h * (1 + gamma) + beta
