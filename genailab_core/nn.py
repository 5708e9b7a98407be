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


class TimeEmbedding(nn.Module):
    """t in [0, 1] -> a learned vector: sinusoidal features of 1000 t (DDPM's step index; Ho et al. 2020) or
    random Fourier features of t (Tancik et al. 2020; Song et al. 2021's NCSN++), then a 2-layer MLP.

    t: (batch,) -> (batch, dim).
    """

    def __init__(self, dim: int = 128, kind: str = "sinusoidal", fourier_scale: float = 16.0):
        super().__init__()
        if kind not in ("sinusoidal", "fourier"):
            raise ValueError(f"kind must be 'sinusoidal' or 'fourier', got {kind!r}.")
        self.dim, self.kind = dim, kind
        if kind == "fourier":                                            # fixed, not trained
            self.register_buffer("frequencies", torch.randn(dim // 2) * fourier_scale)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def features(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "sinusoidal":
            return sinusoidal_embedding(1000.0 * t, self.dim)
        angles = 2 * math.pi * t.float()[:, None] * self.frequencies[None, :]
        return nn.functional.pad(torch.cat([torch.cos(angles), torch.sin(angles)], -1), (0, self.dim % 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t.reshape(-1)))


NULL_CONDITION = -1      # the code of "no condition": classifier-free guidance's unconditional input


class LabelEmbedding(nn.Module):
    """Categorical conditions -> one vector, with a learned null token per key for classifier-free
    guidance (Ho & Salimans 2022): code ``NULL_CONDITION`` (-1) means "unconditional" for that key.
    The keys' embeddings are summed (DiT's class embedding, Peebles & Xie 2023, for several keys).

    codes: (batch, n_keys) long in -1 .. n_k - 1 -> (batch, dim).
    """

    def __init__(self, n_categories: Sequence[int], dim: int):
        super().__init__()
        self.n_categories = list(n_categories)
        self.tables = nn.ModuleList([nn.Embedding(n + 1, dim) for n in self.n_categories])   # row n: null

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != len(self.n_categories):
            raise ValueError(f"Expected condition codes of shape (batch, {len(self.n_categories)}), got "
                             f"{tuple(codes.shape)}.")
        out = 0
        for k, (n, table) in enumerate(zip(self.n_categories, self.tables)):
            key = codes[:, k]
            if key.numel() and (key.min() < NULL_CONDITION or key.max() >= n):
                raise ValueError(f"Condition {k} has codes outside 0..{n - 1} (and -1 for 'none'): a category the "
                                 "model was not trained on. Encode conditions with the training data's categories.")
            out = out + table(torch.where(key == NULL_CONDITION, torch.full_like(key, n), key))
        return out


class ResidualFiLMBlock(nn.Module):
    """h + MLP(FiLM(LayerNorm(h), emb)): a pre-norm residual block modulated by the time (and condition)
    embedding. No batch norm: a denoiser's output must not depend on the other cells of its batch."""

    def __init__(self, width: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = FiLM(emb_dim, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.film(self.norm(h), emb))


class ConditionalMLP(nn.Module):
    """The network of Part III's models: (x_t, t, condition) -> a vector of x's size (a noise, a clean
    point, a score or a velocity: the model that owns it decides). Residual FiLM blocks on an embedding
    of t plus, when ``n_categories`` is given, of the condition codes (with a null token).
    The output layer is zero-initialized, so an untrained network predicts 0 (as DiT's final layer).

    x: (batch, n_in), t: (batch,), codes: (batch, n_keys) long or None -> (batch, n_out), n_out = n_in unless
    given (e.g. class logits of a noise-aware classifier).
    """

    def __init__(self, n_in: int, n_hidden: int = 256, n_layers: int = 3, time_dim: int = 128,
                 n_categories: Sequence[int] | None = None, time_embedding: str = "sinusoidal",
                 dropout: float = 0.0, n_out: int | None = None):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out or n_in
        self.time = TimeEmbedding(time_dim, time_embedding)
        self.labels = LabelEmbedding(n_categories, time_dim) if n_categories else None
        self.inp = nn.Linear(n_in, n_hidden)
        self.blocks = nn.ModuleList([ResidualFiLMBlock(n_hidden, time_dim, dropout) for _ in range(n_layers)])
        self.out_norm = nn.LayerNorm(n_hidden)
        self.out = nn.Linear(n_hidden, self.n_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"Expected x of shape (batch, {self.n_in}), got {tuple(x.shape)}.")
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = self.time(t)
        if codes is not None:
            if self.labels is None:
                raise ValueError("This network was built without conditions (n_categories=None); pass codes=None.")
            emb = emb + self.labels(codes)
        emb = nn.functional.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.out_norm(h))
