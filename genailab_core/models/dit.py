"""A Diffusion Transformer for expression vectors (Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"), the network a diffusion or flow model can use in place of ``nn.ConditionalMLP``.

An image DiT cuts an image into patches; here the input vector x (batch, d), e.g. a cell's principal
components or a VAE latent, is cut into ``n_tokens`` contiguous chunks of d / n_tokens values, each embedded
into one token with a learned position. Time and condition enter through adaptive layer norm with zero
initialisation (adaLN-Zero, section 3.2): every block regresses a shift, a scale and a gate per sub-layer from
the embedding c = emb(t) + emb(labels), and the regressions start at zero, so each block is the identity and
the network's output is 0 at initialisation (as ``ConditionalMLP``). The network knows no loss: a
``Diffusion`` or ``FlowMatching`` model owns it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import LabelEmbedding, TimeEmbedding

ZERO_INIT = ("modulation", "out")          # the layers zero-initialised by name (adaLN-Zero; DiT's final layer)


def zero_init_by_name(module: nn.Module) -> None:
    """adaLN-Zero (DiT's initialize_weights): zero the last Linear of every submodule named "...modulation" and
    every Linear named "out", so that gates, shifts, scales and the output all start at 0."""
    for name, sub in module.named_modules():
        last = name.split(".")[-1]
        if isinstance(sub, nn.Sequential) and last.endswith(ZERO_INIT[0]):
            sub = sub[-1]
        elif not (isinstance(sub, nn.Linear) and last == ZERO_INIT[1]):
            continue
        nn.init.zeros_(sub.weight)
        nn.init.zeros_(sub.bias)


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: h (B, T, H) normalised elsewhere, shift and scale (B, H) -> h (1 + scale) + shift (DiT, eq. in 3.2)."""
    return h * (1 + scale[:, None, :]) + shift[:, None, :]


class AdaLNZeroBlock(nn.Module):
    """One DiT block: multi-head self-attention and an MLP over the tokens, each pre-normed without affine
    parameters, modulated by (shift, scale) and gated by alpha, all six regressed from the embedding c.

    h: (B, T, H), c: (B, C) -> (B, T, H); exactly h at initialisation (the gates start at 0).
    """

    def __init__(self, width: int, n_heads: int, cond_dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if width % n_heads:
            raise ValueError(f"The token width ({width}) must be a multiple of the number of heads ({n_heads}).")
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * width))
        self.last_attention: torch.Tensor | None = None          # (B, T, T), kept when keep_attention is set
        self.keep_attention = False
        zero_init_by_name(self)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)     # each (B, H)
        x = modulate(self.norm1(h), shift1, scale1)
        attended, weights = self.attn(x, x, x, need_weights=self.keep_attention, average_attn_weights=True)
        if self.keep_attention:
            self.last_attention = weights.detach()
        h = h + gate1[:, None, :] * attended
        return h + gate2[:, None, :] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class DiT(nn.Module):
    """Diffusion Transformer over a vector cut into ``n_tokens`` chunks (Peebles & Xie 2023).

    x: (batch, n_in), t: (batch,), codes: (batch, n_keys) long or None -> (batch, n_in): the same call as
    ``nn.ConditionalMLP``, so ``Diffusion(DiT(...), schedule)`` and ``FlowMatching(DiT(...))`` work unchanged.
    n_in must be a multiple of n_tokens. n_categories: the number of labels of each condition key (each with a
    null token -1 for classifier-free guidance), or None for an unconditional network.
    """

    def __init__(self, n_in: int, n_tokens: int, width: int = 128, n_layers: int = 4, n_heads: int = 4,
                 mlp_ratio: float = 4.0, n_categories: Sequence[int] | None = None, dropout: float = 0.0,
                 time_embedding: str = "sinusoidal"):
        super().__init__()
        if n_tokens < 1 or n_in % n_tokens:
            raise ValueError(f"n_tokens={n_tokens} does not divide the input size n_in={n_in}: every token is a "
                             f"chunk of n_in / n_tokens values. Choose a divisor of {n_in}, e.g. "
                             f"{[k for k in range(1, n_in + 1) if n_in % k == 0][:8]}.")
        self.n_in, self.n_tokens, self.chunk = n_in, n_tokens, n_in // n_tokens
        self.embed = nn.Linear(self.chunk, width)                                    # one chunk -> one token
        self.position = nn.Parameter(torch.zeros(n_tokens, width))
        nn.init.normal_(self.position, std=0.02)
        self.time = TimeEmbedding(width, time_embedding)
        self.labels = LabelEmbedding(n_categories, width) if n_categories else None
        self.blocks = nn.ModuleList([AdaLNZeroBlock(width, n_heads, width, mlp_ratio, dropout)
                                     for _ in range(n_layers)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, self.chunk)                                      # token -> its chunk
        zero_init_by_name(self)

    def conditioning(self, t: torch.Tensor, codes: torch.Tensor | None, batch: int) -> torch.Tensor:
        """c = emb(t) + emb(labels): (batch, width)."""
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(-1)
        c = self.time(t)
        if codes is not None:
            if self.labels is None:
                raise ValueError("This DiT was built without conditions (n_categories=None); pass codes=None.")
            c = c + self.labels(codes)
        return c

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"Expected x of shape (batch, {self.n_in}), got {tuple(x.shape)}.")
        c = self.conditioning(t, codes, len(x))
        h = self.embed(x.reshape(len(x), self.n_tokens, self.chunk)) + self.position      # (B, T, H)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale)).reshape(len(x), self.n_in)

    def attention_maps(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Each block's attention weights, averaged over heads: (n_layers, B, T, T); rows sum to 1."""
        for block in self.blocks:
            block.keep_attention = True
        try:
            with torch.no_grad():
                self.forward(x, t, codes)
            return torch.stack([block.last_attention for block in self.blocks])
        finally:
            for block in self.blocks:
                block.keep_attention, block.last_attention = False, None
