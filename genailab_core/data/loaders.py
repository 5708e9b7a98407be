"""Mini-batches of count tensors from an AnnData.

The matrix stays as it is stored (sparse CSR for every loader of the book) and each batch's rows are
densified when the batch is drawn, so memory grows with the batch, not with the data set (a dense
copy of the full Norman screen would be 111k cells x 33k genes x 4 bytes = 15 GB). Each epoch is a
seeded permutation of the row indices, with no DataLoader worker overhead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch


class CountBatches:
    """Iterable of dict batches from ``adata``.

    Each batch holds ``"x"``: float32 (B, G) counts of the genes in ``adata``; ``"index"``: long (B,)
    row indices into ``adata``; and one long (B,) tensor of category codes per condition key,
    named by the key (``.categories[key]`` maps codes back to labels). There is deliberately no
    library-size entry: a count model offsets its mean by the total of the genes it models,
    ``x.sum(-1)`` (``VAE.library``), not by ``obs['library_size']`` (the whole transcriptome).

    batch_size: cells per batch; the last, smaller batch is kept unless ``drop_last``.
    shuffle: permute cells each epoch with a ``torch.Generator`` seeded by ``seed + epoch``, so
        epoch e is reproducible; the epoch counter advances at every ``iter()`` (or set it
        with :meth:`set_epoch`).
    layer: read counts from ``adata.layers[layer]`` instead of ``.X`` (sparse or dense).
    condition_keys: obs columns to encode as category codes.
    device: where the tensors live.
    """

    def __init__(
        self,
        adata: ad.AnnData,
        batch_size: int = 128,
        shuffle: bool = True,
        layer: str | None = None,
        condition_keys: Sequence[str] = (),
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if layer is not None and layer not in adata.layers:
            raise KeyError(
                f"adata has no layer {layer!r}; its layers are {list(adata.layers)}. Pass layer=None for .X."
            )
        matrix = adata.X if layer is None else adata.layers[layer]
        self.device = torch.device(device)
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32) if sp.issparse(matrix) else np.asarray(
            matrix, dtype=np.float32)                                            # (cells, genes), as stored
        self.categories: dict[str, pd.Index] = {}
        self.codes: dict[str, torch.Tensor] = {}
        for key in condition_keys:
            self.categories[key], self.codes[key] = self._encode(adata.obs, key)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def _encode(self, obs: pd.DataFrame, key: str) -> tuple[pd.Index, torch.Tensor]:
        """Category codes of ``obs[key]`` (long tensor) and the categories they index."""
        if key not in obs:
            raise KeyError(f"obs has no column {key!r}; available columns: {list(obs.columns)}.")
        values = obs[key]
        categorical = values.cat if isinstance(values.dtype, pd.CategoricalDtype) else pd.Categorical(values)
        codes = np.asarray(categorical.codes, dtype=np.int64)
        if (codes < 0).any():
            raise ValueError(
                f"obs[{key!r}] has {int((codes < 0).sum())} missing values; drop those cells "
                f"(adata[adata.obs[{key!r}].notna()]) or fill them before batching."
            )
        return pd.Index(categorical.categories), torch.as_tensor(codes).to(self.device)

    @property
    def n_cells(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_genes(self) -> int:
        return self.matrix.shape[1]

    def rows(self, index: np.ndarray) -> torch.Tensor:
        """Dense float32 counts of the cells ``index``: (B,) -> (B, genes) on the device."""
        block = self.matrix[index]
        block = block.toarray() if sp.issparse(block) else block
        return torch.from_numpy(block).to(self.device, non_blocking=True)

    def __len__(self) -> int:
        full, rest = divmod(self.n_cells, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` use the permutation of ``epoch``."""
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """Row order of an epoch: a permutation seeded by ``seed + epoch``, or 0..n-1 unshuffled."""
        if not self.shuffle:
            return torch.arange(self.n_cells)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n_cells, generator=generator)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self.order(self.epoch)
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            on_device = index.to(self.device)
            batch = {"x": self.rows(index.numpy()), "index": on_device}
            batch.update({key: codes[on_device] for key, codes in self.codes.items()})
            yield batch


class PopulationBatches:
    """Mini-batches from two cell populations at once, for a flow between them (e.g. two days of a time
    course): ``{"x": (B, d) rows of x0, key: (B, d) rows of x1}``; an epoch passes once over x0 in a seeded
    shuffled order, and x1 rows are drawn from a seeded permutation of x1, cycled as needed.

    x0: (n0, d) and x1: (n1, d) arrays (float32 tensors on ``device`` in the batches). ``paired=True`` keeps
    row i of x0 with row i of x1 (equal sizes; e.g. reflow's (cell, noise) couples). ``set_epoch`` as
    :class:`CountBatches`, so ``fit()`` resumes with the same order.
    """

    def __init__(self, x0, x1, batch_size: int = 128, key: str = "x1", device: str | torch.device = "cpu",
                 seed: int = 0, paired: bool = False) -> None:
        x0, x1 = np.asarray(x0, dtype=np.float32), np.asarray(x1, dtype=np.float32)
        if x0.ndim != 2 or x1.ndim != 2 or x0.shape[1] != x1.shape[1]:
            raise ValueError(f"Both populations must be (cells, d) with the same d, got {x0.shape} and {x1.shape}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.device = torch.device(device)
        self.x0, self.x1 = torch.from_numpy(x0), torch.from_numpy(x1)
        if paired and len(x0) != len(x1):
            raise ValueError(f"paired=True keeps row i of x0 with row i of x1, so both need as many rows; got "
                             f"{len(x0)} and {len(x1)}.")
        self.batch_size, self.key, self.seed, self.epoch, self.paired = batch_size, key, seed, 0, paired

    def __len__(self) -> int:
        return -(-len(self.x0) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order0 = torch.randperm(len(self.x0), generator=generator)
        order1 = order0 if self.paired else torch.randperm(len(self.x1), generator=generator).repeat(
            -(-len(self.x0) // len(self.x1)) + 1)
        for start in range(0, len(self.x0), self.batch_size):
            rows0 = order0[start:start + self.batch_size]
            rows1 = order1[start:start + len(rows0)]
            yield {"x": self.x0[rows0].to(self.device), self.key: self.x1[rows1].to(self.device)}
