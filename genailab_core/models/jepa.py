"""A joint-embedding predictive architecture (JEPA) for cells: predict in embedding space, reconstruct nothing.

Two views of one cell are made from its counts (``data.views``): a *context* view, thinned and with a few
gene programs masked, and a *target* view, thinned independently. A context encoder f_theta embeds the
context view, a predictor g_phi maps that embedding (and which programs were masked, I-JEPA's "where the
target is") to the embedding that a target encoder f_xi gives the target view:

    s_x = f_theta(x_ctx),   s_hat = g_phi(s_x, m),   s_y = sg(f_xi(x_tgt)),   L_inv = ||s_hat - s_y||^2 / d

(Assran et al. 2023, eq. 1-2; sg = stop-gradient). The target encoder is not trained by gradients: it is an
exponential moving average of the context encoder (BYOL, Grill et al. 2020, eq. 1),

    xi <- m xi + (1 - m) theta          after every optimizer step (:class:`TargetUpdate`, a ``fit`` hook).

Nothing in L_inv alone forbids the trivial solution f = constant (every cell at one point: zero loss). Two
things keep the embedding alive, and chapter 14 switches them off to watch it collapse: the EMA target with
its stop-gradient, and the variance and covariance terms of VICReg (Bardes et al. 2022, eq. 1-6) applied to
the context embeddings s_x (the branch that receives gradients; the EMA branch gets none).
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import binomial_thin, log_normalized, mask_programs
from ..nn import MLP
from .base import LossOutput

TARGETS = ("ema", "shared")


# -- VICReg (Bardes, Ponce & LeCun 2022) ------------------------------------------------------------------------
def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z) = 1/d sum_j max(0, gamma - sqrt(Var(z_j) + eps)) (VICReg eq. 1): a hinge that keeps each dimension's
    standard deviation across the batch at least gamma. z: (batch, d) -> ()."""
    std = torch.sqrt(z.var(dim=0) + eps)                                         # (d,)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = 1/d sum_{i != j} C(Z)_ij^2, C the batch covariance (VICReg eq. 3-4): decorrelates the dimensions,
    so they cannot all carry the same signal (dimensional collapse). z: (batch, d) -> ()."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)                                          # (d, d)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def invariance_term(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """s(Z, Z') = mean squared error between matched rows (VICReg eq. 5, as its reference code: F.mse_loss).
    prediction, target: (batch, d) -> ()."""
    return F.mse_loss(prediction, target)


# -- the model --------------------------------------------------------------------------------------------------
class JEPA(nn.Module):
    """Context encoder, EMA target encoder, predictor; VICReg-regularized prediction in embedding space.

    n_genes: genes of the counts in ``batch["x"]`` (batch, n_genes); n_embed: embedding dimension d.
    programs: (n_genes,) gene-program label of each gene (``models.tokens.gene_programs``), or None for no
        masking; n_masked: programs masked in each context view.
    thin_range: each view keeps each UMI with probability p ~ Uniform(thin_range), drawn per cell and view.
    target: "ema" (an EMA copy of the context encoder behind a stop-gradient, updated by :class:`TargetUpdate`)
        or "shared" (the context encoder itself embeds the target view, gradients through both branches:
        the plain Siamese network, which has no reason not to collapse).
    vicreg: add the variance and covariance terms on s_x; weights (variance, invariance, covariance) default
        to VICReg's 25, 25, 1 (its section 4.1); gamma is the target standard deviation.
    """

    def __init__(self, n_genes: int, n_embed: int = 16, n_hidden: int = 256, n_layers: int = 2,
                 programs: Sequence[int] | np.ndarray | torch.Tensor | None = None, n_masked: int = 0,
                 thin_range: tuple[float, float] = (0.3, 1.0), target: str = "ema", vicreg: bool = True,
                 weights: tuple[float, float, float] = (25.0, 25.0, 1.0), gamma: float = 1.0,
                 target_sum: float = 1e4):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
        low, high = thin_range
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"thin_range must satisfy 0 < low <= high <= 1 (keep probabilities), got {thin_range}.")
        if programs is None and n_masked:
            raise ValueError("n_masked > 0 needs programs= (one program label per gene) to know what to mask.")
        programs = torch.zeros(0, dtype=torch.long) if programs is None else torch.as_tensor(programs).long()
        if programs.numel() and programs.shape != (n_genes,):
            raise ValueError(f"programs must give one label per gene ({n_genes},), got shape {tuple(programs.shape)}.")
        self.n_programs = int(programs.max()) + 1 if programs.numel() else 0
        if not 0 <= n_masked <= self.n_programs:
            raise ValueError(f"n_masked must be between 0 and the number of programs ({self.n_programs}), "
                             f"got {n_masked}.")
        self.n_genes, self.n_embed, self.n_masked = n_genes, n_embed, n_masked
        self.thin_range, self.target_kind, self.vicreg = (float(low), float(high)), target, vicreg
        self.weights, self.gamma, self.target_sum = tuple(weights), gamma, target_sum
        self.register_buffer("programs", programs)
        self.context = MLP(n_genes, n_embed, n_hidden, n_layers, norm="layer")             # f_theta
        self.target = copy.deepcopy(self.context).requires_grad_(False) if target == "ema" else None   # f_xi
        self.predictor = MLP(n_embed + self.n_programs, n_embed, n_hidden, 1, norm="layer")  # g_phi

    # -- views ---------------------------------------------------------------------------------------------------
    def _keep_probability(self, n: int, device) -> torch.Tensor:
        low, high = self.thin_range
        return low + (high - low) * torch.rand(n, device=device)                   # (n,) p ~ U(low, high)

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two views of each cell. x: (batch, genes) counts -> (context counts (batch, genes), masked programs
        (batch, n_programs), target counts (batch, genes)): independent thinnings; programs masked in the context."""
        context = binomial_thin(x, self._keep_probability(x.shape[0], x.device))
        target = binomial_thin(x, self._keep_probability(x.shape[0], x.device))
        if self.n_masked:
            context, masked = mask_programs(context, self.programs, self.n_masked)
        else:
            masked = x.new_zeros(x.shape[0], self.n_programs)
        return context, masked, target

    # -- embeddings and loss ----------------------------------------------------------------------------------
    def encode(self, counts: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """f(log1p(1e4 x / l)) of counts (batch, genes) -> (batch, n_embed); the context encoder by default."""
        return (encoder or self.context)(log_normalized(counts, self.target_sum))

    def target_encoder(self) -> nn.Module:
        return self.target if self.target is not None else self.context

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """Weighted VICReg objective of the prediction s_hat against the target embedding s_y; terms logged.

        loss = w_inv s(s_hat, s_y) + [w_var v(s_x) + w_cov c(s_x)] (the bracket only with ``vicreg``)."""
        context, masked, target = self.views(batch["x"])
        s_x = self.encode(context)                                                   # (batch, d)
        prediction = self.predictor(torch.cat([s_x, masked], dim=1))                 # (batch, d)
        if self.target is not None:
            with torch.no_grad():                                                    # stop-gradient
                s_y = self.encode(target, self.target)
        else:
            s_y = self.encode(target)                                                # shared, gradients flow
        w_var, w_inv, w_cov = self.weights
        terms = {"invariance": invariance_term(prediction, s_y), "variance": variance_term(s_x, self.gamma),
                 "covariance": covariance_term(s_x)}
        loss = w_inv * terms["invariance"]
        if self.vicreg:
            loss = loss + w_var * terms["variance"] + w_cov * terms["covariance"]
        terms["embedding_std"] = s_x.detach().std(dim=0).mean()                      # collapse shows here first
        return LossOutput(loss, terms)

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """xi <- decay * xi + (1 - decay) * theta for every parameter (BYOL eq. 1); buffers are copied."""
        if self.target is None:
            raise ValueError("This JEPA has target='shared': there is no separate target encoder to update. "
                             "Build it with target='ema' to use TargetUpdate.")
        for xi, theta in zip(self.target.parameters(), self.context.parameters()):
            xi.mul_(decay).add_(theta, alpha=1.0 - decay)
        for b_target, b_context in zip(self.target.buffers(), self.context.buffers()):
            b_target.copy_(b_context)

    @torch.no_grad()
    def embed(self, counts, batch_size: int = 1024, which: str = "context") -> np.ndarray:
        """Embeddings of cells from their counts (numpy, scipy sparse or torch; (cells, genes)) -> (cells, d),
        in eval mode, with no view: the whole cell. which: "context" (the encoder trained by gradients, used
        downstream as in BYOL) or "target" (the EMA encoder, which I-JEPA evaluates)."""
        if which not in ("context", "target"):
            raise ValueError(f"which must be 'context' or 'target', got {which!r}.")
        encoder = self.context if which == "context" else self.target_encoder()
        self.eval()
        device = next(self.parameters()).device
        out = []
        for start in range(0, counts.shape[0], batch_size):
            block = counts[start:start + batch_size]
            block = block.toarray() if hasattr(block, "toarray") else block
            block = torch.as_tensor(np.asarray(block) if not torch.is_tensor(block) else block,
                                    dtype=torch.float32, device=device)
            out.append(self.encode(block, encoder).cpu())
        return torch.cat(out).numpy()


class TargetUpdate:
    """Step hook for ``fit(hooks=[TargetUpdate(decay)])``: the EMA update of the JEPA's target encoder after every
    optimizer step, xi_k = m xi_{k-1} + (1 - m) theta_k, so that xi_k = m^k xi_0 + (1 - m) sum_j m^(k-j) theta_j."""

    def __init__(self, decay: float = 0.99):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}.")
        self.decay = decay

    def __call__(self, model: JEPA, step: int) -> None:
        model.update_target(self.decay)
