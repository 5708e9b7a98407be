"""Small tensor helpers the generative models of Part III share: times and condition codes as batches, and
where a module lives."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def batch_times(t, x: torch.Tensor) -> torch.Tensor:
    """A time given as a float, a () tensor, (batch,) or (batch, 1) -> (batch,) on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
    return t.expand(x.shape[0]) if t.numel() == 1 else t


def column(v: torch.Tensor) -> torch.Tensor:
    """(batch,) -> (batch, 1), to broadcast over genes."""
    return v.reshape(-1, 1)


def module_device(module: nn.Module) -> torch.device:
    """Where the module's parameters (or buffers) live; CPU for a module without any."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def feature_count(network: nn.Module) -> int:
    """The data dimension d of a ``ConditionalMLP``-like network (its ``n_in``)."""
    n = getattr(network, "n_in", None)
    if not isinstance(n, int):
        raise ValueError(f"The network ({type(network).__name__}) needs an integer attribute n_in, the data dimension "
                         "it maps (batch, n_in) -> (batch, n_in); ConditionalMLP has it.")
    return n


def batch_codes(batch: dict[str, torch.Tensor], keys: Sequence[str]) -> torch.Tensor | None:
    """The condition codes of a batch stacked as (batch, n_keys) long, or None without keys."""
    if not keys:
        return None
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"The batch has no condition {missing}; build it with "
                         f"CountBatches(adata, condition_keys={list(keys)}).")
    return torch.stack([batch[k] for k in keys], dim=-1).long()
