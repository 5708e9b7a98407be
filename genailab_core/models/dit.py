"""A Diffusion Transformer for expression vectors (Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"), the network a diffusion or flow model can use in place of ``nn.ConditionalMLP``.

An image DiT cuts an image into patches; here a tokenizer (``models.tokens``) turns the input vector x
(batch, d), a cell's principal components, a VAE latent or its genes, into tokens: chunks of the vector,
gene programs, or one token per gene. Time and condition enter through adaptive layer norm with zero
initialisation (adaLN-Zero, section 3.2): every block regresses a shift, a scale and a gate per sub-layer from
the embedding c = emb(t) + emb(labels), and the regressions start at zero, so each block is the identity and
the network's output is 0 at initialisation (as ``ConditionalMLP``). The network knows no loss: a
``Diffusion`` or ``FlowMatching`` model owns it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..nn import LabelEmbedding, TimeEmbedding
from .tokens import GroupTokens

ZERO_INIT = ("modulation", "out")          # the layers zero-initialised by name (adaLN-Zero; a readout's "out")


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
    mixer: another token mixer in place of attention, a module h (B, T, H) -> (B, T, H) (e.g.
    ``ssm.BidirectionalSSM``: a Mamba-style block keeps this block's norms, MLP and gates and swaps the mixer).
    """

    def __init__(self, width: int, n_heads: int, cond_dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 mixer: nn.Module | None = None):
        super().__init__()
        if mixer is None and width % n_heads:
            raise ValueError(f"The token width ({width}) must be a multiple of the number of heads ({n_heads}).")
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True) if mixer is None else None
        self.mixer = mixer
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
        if self.mixer is not None:
            mixed = self.mixer(x)
        else:
            mixed, weights = self.attn(x, x, x, need_weights=self.keep_attention, average_attn_weights=True)
            if self.keep_attention:
                self.last_attention = weights.detach()
        h = h + gate1[:, None, :] * mixed
        return h + gate2[:, None, :] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class DiT(nn.Module):
    """Diffusion Transformer over the tokens of a vector (Peebles & Xie 2023).

    x: (batch, n_in), t: (batch,), codes: (batch, n_keys) long or None -> (batch, n_in): the same call as
    ``nn.ConditionalMLP``, so ``Diffusion(DiT(...), schedule)`` and ``FlowMatching(DiT(...))`` work unchanged.
    tokens: a tokenizer of ``models.tokens`` (``GroupTokens``, ``SetTokens``) whose width is the DiT's, or an
    int n_tokens for n_in / n_tokens contiguous chunks (``GroupTokens.chunks``). n_categories: the number of
    labels of each condition key (each with a null token -1 for classifier-free guidance), or None.
    mixer: None for self-attention, or a factory width -> token mixer (one per block; chapter 13 passes
    ``lambda w: BidirectionalSSM(w, days)`` for a state-space backbone along a real sequence axis).
    """

    def __init__(self, n_in: int, tokens: int | nn.Module, width: int = 128, n_layers: int = 4, n_heads: int = 4,
                 mlp_ratio: float = 4.0, n_categories: Sequence[int] | None = None, dropout: float = 0.0,
                 time_embedding: str = "sinusoidal", mixer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.tokens = GroupTokens.chunks(n_in, tokens, width) if isinstance(tokens, int) else tokens
        if self.tokens.n_in != n_in or self.tokens.width != width:
            raise ValueError(f"The tokenizer maps {self.tokens.n_in} inputs to tokens of width {self.tokens.width}; "
                             f"this DiT has n_in={n_in}, width={width}.")
        self.n_in, self.n_tokens = n_in, self.tokens.n_tokens
        self.time = TimeEmbedding(width, time_embedding)
        self.labels = LabelEmbedding(n_categories, width) if n_categories else None
        self.blocks = nn.ModuleList([AdaLNZeroBlock(width, n_heads, width, mlp_ratio, dropout,
                                                    None if mixer is None else mixer(width))
                                     for _ in range(n_layers)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        zero_init_by_name(self)                                   # the tokenizers' readouts start at 0 too

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
        h = self.tokens(x)                                                                   # (B, T, H)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.tokens.readout(modulate(self.final_norm(h), shift, scale))               # (B, n_in)

    def attention_maps(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Each block's attention weights, averaged over heads: (n_layers, B, T, T); rows sum to 1."""
        if any(block.attn is None for block in self.blocks):
            raise ValueError("This network mixes its tokens with another mixer than attention; it has no attention maps.")
        for block in self.blocks:
            block.keep_attention = True
        try:
            with torch.no_grad():
                self.forward(x, t, codes)
            return torch.stack([block.last_attention for block in self.blocks])
        finally:
            for block in self.blocks:
                block.keep_attention, block.last_attention = False, None
