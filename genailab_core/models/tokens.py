"""Tokenizers: how a transformer sees an expression vector (chapter 10's question).

A tokenizer maps x (batch, n_in) to tokens (batch, n_tokens, width) and back (``readout``), so a transformer
(``models.DiT``) can attend between parts of a cell. Two kinds:

- ``GroupTokens``: the inputs are partitioned into groups, one token per group, with a linear map per group in
  and out. Contiguous chunks of a latent vector (``GroupTokens.chunks``, an image DiT's patches) and gene
  programs, genes clustered by their correlation on training cells (``gene_programs``), are both partitions.
- ``SetTokens``: one token per gene, the gene's learned embedding scaled by its value, with no position: a set.
  Its readout is shared by all genes, so a transformer on set tokens is permutation-equivariant over genes.
- For a trajectory (L steps x G genes, chapter 13): ``GeneTrackTokens``, one token per gene holding its track
  over the steps (a set of genes), and ``StepTokens``, one token per step (a sequence, for attention or an SSM).

Readouts start at zero, so a DiT built on them outputs 0 at initialisation (adaLN-Zero, Peebles & Xie 2023).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..nn import sinusoidal_embedding


class GroupTokens(nn.Module):
    """One token per group of inputs: token_k = W_k x[group k] + b_k, and back x[group k] = V_k h_k + c_k.

    groups: (n_in,) integer group of each input, using every label 0 .. n_tokens - 1.
    x: (B, n_in) -> (B, n_tokens, width); readout: (B, n_tokens, width) -> (B, n_in).
    Groups of different sizes are padded to the largest (m); padded weights are masked to zero.
    """

    def __init__(self, groups, width: int):
        super().__init__()
        groups = np.asarray(groups)
        if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer) or groups.min(initial=0) < 0:
            raise ValueError("groups must be a 1-D array of non-negative integer group labels, one per input.")
        sizes = np.bincount(groups)
        if (sizes == 0).any():
            raise ValueError(f"Group labels must be 0 .. n_groups - 1 with every group used; empty groups: "
                             f"{np.flatnonzero(sizes == 0).tolist()[:10]}.")
        self.n_in, self.n_tokens, self.width = len(groups), len(sizes), width
        m = int(sizes.max())
        index = np.full((self.n_tokens, m), self.n_in)                     # n_in: a zero column (padding)
        for k in range(self.n_tokens):
            members = np.flatnonzero(groups == k)
            index[k, :len(members)] = members
        slot = np.empty(self.n_in, dtype=np.int64)                         # where input g sits in (n_tokens * m)
        slot[index[index < self.n_in]] = np.flatnonzero((index < self.n_in).ravel())
        self.register_buffer("index", torch.as_tensor(index))
        self.register_buffer("slot", torch.as_tensor(slot))
        mask = torch.as_tensor(index < self.n_in, dtype=torch.float32)     # (n_tokens, m): 0 at padding
        bound = 1 / torch.as_tensor(sizes, dtype=torch.float32).sqrt()    # nn.Linear's fan-in bound per group
        self.in_weight = nn.Parameter((torch.rand(self.n_tokens, m, width) * 2 - 1) * bound[:, None, None]
                                      * mask[:, :, None])
        self.in_bias = nn.Parameter(torch.zeros(self.n_tokens, width))
        self.out_weight = nn.Parameter(torch.zeros(self.n_tokens, width, m))
        self.out_bias = nn.Parameter(torch.zeros(self.n_tokens, m))

    @classmethod
    def chunks(cls, n_in: int, n_tokens: int, width: int) -> "GroupTokens":
        """n_tokens contiguous chunks of n_in / n_tokens inputs (an image DiT's patches, for a vector)."""
        if n_tokens < 1 or n_in % n_tokens:
            divisors = [k for k in range(1, n_in + 1) if n_in % k == 0][:8]
            raise ValueError(f"n_tokens={n_tokens} does not divide the input size n_in={n_in}: every token is a "
                             f"chunk of n_in / n_tokens values. Choose a divisor of {n_in}, e.g. {divisors}.")
        return cls(np.arange(n_in) // (n_in // n_tokens), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x, (0, 1))                                          # (B, n_in + 1)
        grouped = padded[:, self.index]                                                # (B, T, m)
        return torch.einsum("btm,tmh->bth", grouped, self.in_weight) + self.in_bias     # padding: x = 0

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        values = torch.einsum("bth,thm->btm", h, self.out_weight) + self.out_bias      # (B, T, m)
        return values.reshape(len(h), -1)[:, self.slot]                                 # (B, n_in)


class SetTokens(nn.Module):
    """One token per gene: token_g = x_g e_g, a learned gene embedding scaled by the gene's value, with no
    positional encoding; readout out_g = r . h_g + c with (r, c) shared by all genes (zero at initialisation).

    x: (B, n_in) -> (B, n_in, width); readout: (B, n_in, width) -> (B, n_in).
    """

    def __init__(self, n_in: int, width: int):
        super().__init__()
        self.n_in, self.n_tokens, self.width = n_in, n_in, width
        self.gene_embedding = nn.Parameter(torch.randn(n_in, width) / math.sqrt(width))
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None] * self.gene_embedding                                     # (B, n_in, width)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)[..., 0]


def gene_programs(expression, n_programs: int, linkage: str = "average") -> np.ndarray:
    """Genes grouped into n_programs co-expression modules by hierarchical clustering across the training cells.

    linkage "average": distance 1 - |r| between genes, average linkage (co-expressed or anti-correlated genes
    together; on real data it tends to leave most genes in one program). linkage "ward": Ward's criterion
    (Ward 1963) on the genes' z-scored profiles, whose squared distance is 2 n (1 - r): modules of comparable size.
    expression: (cells, genes) of the training cells only -> (genes,) program labels 0 .. n_programs - 1.
    """
    from sklearn.cluster import AgglomerativeClustering

    x = np.asarray(expression.toarray() if hasattr(expression, "toarray") else expression, dtype=np.float64)
    if x.ndim != 2 or not 1 <= n_programs <= x.shape[1]:
        raise ValueError(f"expression must be (cells, genes) and n_programs between 1 and the number of genes, "
                         f"got shape {x.shape} and n_programs={n_programs}.")
    if linkage == "ward":
        profiles = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)                 # (cells, genes)
        return AgglomerativeClustering(n_clusters=n_programs, linkage="ward").fit_predict(profiles.T)
    if linkage != "average":
        raise ValueError(f"linkage must be 'average' or 'ward', got {linkage!r}.")
    r = np.nan_to_num(np.corrcoef(x.T))                               # constant genes: correlation 0
    clustering = AgglomerativeClustering(n_clusters=n_programs, metric="precomputed", linkage="average")
    return clustering.fit_predict(1.0 - np.abs(r))


class GeneTrackTokens(nn.Module):
    """Tokens of a trajectory x (L steps x G genes, flattened step-major to L*G), one per gene: the gene's track
    over the L steps, h_g = W x[:, :, g] + e_g, with W shared by all genes and e_g a learned gene embedding (the
    gene's identity, as scGPT adds gene and value embeddings; Cui et al. 2024), and no position. A transformer on
    these tokens is a set transformer over genes (Lee et al. 2019): reordering the genes with their embeddings
    reorders its output. readout: out[:, :, g] = V h_g + c, shared by all genes, zero at initialisation.

    x: (B, L*G) -> (B, G, width); readout: (B, G, width) -> (B, L*G).
    """

    def __init__(self, n_steps: int, n_genes: int, width: int):
        super().__init__()
        self.n_steps, self.n_genes = n_steps, n_genes
        self.n_in, self.n_tokens, self.width = n_steps * n_genes, n_genes, width
        self.gene_embedding = nn.Parameter(torch.randn(n_genes, width) / math.sqrt(width))
        self.value = nn.Linear(n_steps, width)
        self.out = nn.Linear(width, n_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tracks = x.reshape(len(x), self.n_steps, self.n_genes).transpose(1, 2)          # (B, G, L)
        return self.value(tracks) + self.gene_embedding                                 # (B, G, width)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).transpose(1, 2).reshape(len(h), self.n_in)                   # (B, L*G)


class StepTokens(nn.Module):
    """Tokens of a trajectory x (L steps x G genes, flattened step-major), one per step: h_l = W x[:, l, :] + b,
    plus, when ``times`` are given, fixed sinusoidal features of the step's real time (a transformer's positional
    encoding, Vaswani et al. 2017, at the sampling days rather than at 0, 1, 2, ...). An SSM mixer takes the times
    in its kernel instead and needs none. readout: x[:, l, :] = V h_l + c, zero at initialisation.

    x: (B, L*G) -> (B, L, width); readout: (B, L, width) -> (B, L*G).
    """

    def __init__(self, n_steps: int, n_genes: int, width: int, times=None):
        super().__init__()
        self.n_steps, self.n_genes = n_steps, n_genes
        self.n_in, self.n_tokens, self.width = n_steps * n_genes, n_steps, width
        self.value = nn.Linear(n_genes, width)
        self.out = nn.Linear(width, n_genes)
        position = torch.zeros(n_steps, width)
        if times is not None:
            times = torch.as_tensor(times, dtype=torch.float32)
            if times.shape != (n_steps,):
                raise ValueError(f"times must hold one time per step ({n_steps}), got shape {tuple(times.shape)}.")
            position = sinusoidal_embedding(times, width)                                # (L, width)
        self.register_buffer("position", position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x.reshape(len(x), self.n_steps, self.n_genes)) + self.position

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).reshape(len(h), self.n_in)
