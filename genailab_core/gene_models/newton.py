"""Damped Newton (Levenberg-Marquardt) on every gene's 2 or 3 parameters at once.

Each gene's gradient and Hessian are in closed form (derived below, checked against autograd in
tests/test_gene_models.py), so one step costs a few elementwise passes over the count matrix.
"""
from __future__ import annotations

import torch

from .likelihood import _chunks, _loglik_per_gene, _SparseCounts


# ----------------------------------------------------------------------------------------------
# Gradient and Hessian per gene, in closed form
# ----------------------------------------------------------------------------------------------
# Parameters per gene: a = log p, b = log theta, c = logit pi. With q = mu / (theta + mu) and
# L = log NB(0) = -theta log(1 + mu / theta), an entry x of an NB gene has
#   dl/da = L_a + x (1 - q),   L_a = -theta q
#   dl/db = L_b - x (1 - q) + theta [psi(x + theta) - psi(theta)],   L_b = L + theta q
# and second derivatives L_aa = -theta q (1 - q), L_ab = -theta q^2, L_bb = L + theta q + theta q^2,
# each shifted by -x q (1 - q), +x q (1 - q), -x q (1 - q) (+ theta^2 [psi'(x + theta) - psi'(theta)]
# for bb). A ZINB zero, log(pi + (1 - pi) e^L), has with w = sigmoid(L - c) (the chance that
# the zero is an NB zero): d/du = w L_u and d2/dudv = w L_uv + w (1 - w) L_u L_v for u, v in {a, b},
# d/dc = 1 - w - pi, d2/dc du = -w (1 - w) L_u, d2/dc2 = w (1 - w) - pi (1 - pi).
# A ZINB non-zero is log(1 - pi) + log NB(x): d/dc = -pi, d2/dc2 = -pi (1 - pi).
# tests/test_gene_models.py checks all of these against autograd.


def _nb_zero_derivatives(mu: torch.Tensor, theta: torch.Tensor):
    """L = log NB(0) and its derivatives in (a, b), elementwise: L, (L_a, L_b), (L_aa, L_ab, L_bb), q."""
    q = mu / (theta + mu)
    one_minus_q = theta / (theta + mu)
    L = -theta * torch.log1p(mu / theta)
    theta_q = theta * q
    return L, (-theta_q, L + theta_q), (-theta_q * one_minus_q, -theta_q * q, L + theta_q + theta_q * q), q


def _zero_terms(mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor | None):
    """Gradient [k] and Hessian [k][k] of log P(x = 0) as lists of elementwise tensors; k = 2 or 3."""
    L, (La, Lb), (Laa, Lab, Lbb), _ = _nb_zero_derivatives(mu, theta)
    if zi_logits is None:
        return [La, Lb], [[Laa, Lab], [Lab, Lbb]]
    pi = torch.sigmoid(zi_logits)
    w = torch.sigmoid(L - zi_logits)                                            # P(NB zero | x = 0)
    ww = w * (1 - w)
    aa, ab, bb = w * Laa + ww * La * La, w * Lab + ww * La * Lb, w * Lbb + ww * Lb * Lb
    ac, bc, cc = -ww * La, -ww * Lb, ww - pi * (1 - pi)
    return [w * La, w * Lb, 1 - w - pi], [[aa, ab, ac], [ab, bb, bc], [ac, bc, cc]]


def _nonzero_terms(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor | None):
    """Gradient [k] and Hessian [k][k] of log P(x) at x > 0 (elementwise), without the psi terms."""
    _, (La, Lb), (Laa, Lab, Lbb), q = _nb_zero_derivatives(mu, theta)
    x_one_minus_q = x * (theta / (theta + mu))
    xqq = x_one_minus_q * q
    grad = [La + x_one_minus_q, Lb - x_one_minus_q]
    hess = [[Laa - xqq, Lab + xqq], [Lab + xqq, Lbb - xqq]]
    if zi_logits is not None:
        pi, zero = torch.sigmoid(zi_logits), torch.zeros_like(mu)
        grad.append(-pi)
        hess = [hess[0] + [zero], hess[1] + [zero], [zero, zero, -pi * (1 - pi)]]
    return grad, hess


def _reduce(grad: list, hess: list, reduce) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``reduce`` to every term (before stacking, so no (k, k, cells, genes) tensor is built)."""
    return (torch.stack([reduce(g) for g in grad]),
            torch.stack([torch.stack([reduce(h) for h in row]) for row in hess]))


def _natural(params: torch.Tensor):
    """(k, genes) optimizer parameters -> p, theta, zi_logits (None for NB)."""
    return params[0].exp(), params[1].exp(), (params[2] if len(params) == 3 else None)


def _loglik_derivatives(data: _SparseCounts, params: torch.Tensor, chunk: int = 256):
    """Gradient (k, genes) and Hessian (genes, k, k) of each gene's log-likelihood; params: (k, genes).

    Same decomposition as :func:`_loglik_per_gene`: all cells as zeros (dense, in gene chunks),
    plus non-zero corrections, plus the psi terms summed over distinct (gene, x) pairs.
    """
    p, theta, zi = _natural(params)
    k, n_genes = params.shape
    grad = torch.zeros(k, n_genes, dtype=params.dtype)
    hess = torch.zeros(k, k, n_genes, dtype=params.dtype)
    for cols in _chunks(n_genes, chunk):
        terms = _zero_terms(data.library[:, None] * p[cols], theta[cols], None if zi is None else zi[cols])
        grad[:, cols], hess[:, :, cols] = _reduce(*terms, reduce=lambda t: t.sum(0))
    g = data.cols
    mu_nz, th_nz, zi_nz = data.library[data.rows] * p[g], theta[g], (None if zi is None else zi[g])
    (gx, hx), (g0, h0) = (_reduce(*_nonzero_terms(data.values, mu_nz, th_nz, zi_nz), reduce=lambda t: t),
                          _reduce(*_zero_terms(mu_nz, th_nz, zi_nz), reduce=lambda t: t))
    grad.index_add_(1, g, gx - g0)
    hess = hess.reshape(k * k, n_genes).index_add_(1, g, (hx - h0).reshape(k * k, -1)).reshape(k, k, n_genes)
    th, v, cells = theta[data.pair_gene], data.pair_value, data.pair_cells
    d_psi = cells * th * (torch.digamma(v + th) - torch.digamma(th))
    d_trigamma = cells * th ** 2 * (torch.polygamma(1, v + th) - torch.polygamma(1, th))
    grad[1].index_add_(0, data.pair_gene, d_psi)
    hess[1, 1].index_add_(0, data.pair_gene, d_psi + d_trigamma)
    return grad, hess.permute(2, 0, 1)


def _restrict(data: _SparseCounts, genes: torch.Tensor) -> _SparseCounts:
    """The same counts restricted to a subset of genes (renumbered 0..len(genes)-1)."""
    new_index = torch.full((data.n_genes,), -1, dtype=torch.long)
    new_index[genes] = torch.arange(len(genes))
    keep, keep_pair = new_index[data.cols] >= 0, new_index[data.pair_gene] >= 0
    return _SparseCounts(rows=data.rows[keep], cols=new_index[data.cols[keep]], values=data.values[keep],
                         library=data.library, pair_gene=new_index[data.pair_gene[keep_pair]],
                         pair_value=data.pair_value[keep_pair], pair_cells=data.pair_cells[keep_pair],
                         shape=(data.n_cells, len(genes)), matrix=None)


# ----------------------------------------------------------------------------------------------
# Optimizer: damped Newton on all genes at once
# ----------------------------------------------------------------------------------------------
def _newton(data: _SparseCounts, params: torch.Tensor, steps: int, gtol: float,
            bounds: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximize every gene's log-likelihood over its k parameters; params: (k, genes).

    Genes do not interact, so each takes its own Levenberg-Marquardt step
    ``(H + lam diag|H|) d = grad`` on the negative log-likelihood (Marquardt 1963), kept only if the
    gene's likelihood improves; ``lam`` shrinks after a success and grows after a failure, so
    non-convex genes fall back to gradient steps. Converged genes drop out of the work.
    Returns (params, converged); a gene has converged when every |gradient| <= gtol (or the
    parameter sits on its bound with the gradient pushing outwards).
    """
    n_genes = params.shape[1]
    params = params.detach().clone()
    loglik = _loglik_per_gene(data, *_natural(params))
    damping = torch.full((n_genes,), 1e-3, dtype=params.dtype)
    converged = torch.zeros(n_genes, dtype=torch.bool)
    lower = torch.tensor([b[0] for b in bounds], dtype=params.dtype)[:, None]
    upper = torch.tensor([b[1] for b in bounds], dtype=params.dtype)[:, None]
    for _ in range(steps):
        active = torch.nonzero(~converged).squeeze(1)                          # (active,)
        if len(active) == 0:
            break
        sub = data if len(active) == n_genes else _restrict(data, active)
        theta_now = params[:, active]
        grad, hess = _loglik_derivatives(sub, theta_now)                         # (k, active), (active, k, k)
        at_bound = ((theta_now <= lower) & (grad < 0)) | ((theta_now >= upper) & (grad > 0))
        done = (grad.abs().masked_fill(at_bound, 0.0) <= gtol).all(0)
        converged[active[done]] = True
        nll_hess = -hess
        scale = nll_hess.diagonal(dim1=1, dim2=2).abs().clamp_min(1e-8)          # (active, k)
        system = nll_hess + damping[active, None, None] * torch.diag_embed(scale)
        step = torch.linalg.solve(system, grad.T.unsqueeze(-1)).squeeze(-1).T   # (k, active)
        step = torch.nan_to_num(step).clamp(-2.0, 2.0)                          # at most a factor e^2
        trial = torch.minimum(torch.maximum(theta_now + step, lower), upper)
        trial_loglik = _loglik_per_gene(sub, *_natural(trial))
        better = torch.isfinite(trial_loglik) & (trial_loglik >= loglik[active]) & ~done
        params[:, active] = torch.where(better, trial, theta_now)
        loglik[active] = torch.where(better, trial_loglik, loglik[active])
        damping[active] = torch.where(better, damping[active] / 4, damping[active] * 8).clamp(1e-9, 1e9)
    return params, converged
