"""Small tensor helpers the generative models of Part III share: times and condition codes as batches, and
where a module lives."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import NULL_CONDITION


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


def drop_conditions(codes: torch.Tensor, p_uncond: float) -> torch.Tensor:
    """Replace all codes of each cell by the null code with probability p_uncond (classifier-free guidance's
    training, Ho & Salimans 2022, Alg. 1). codes: (B, n_keys) -> (B, n_keys)."""
    if p_uncond == 0:
        return codes
    dropped = torch.rand(codes.shape[0], device=codes.device) < p_uncond                 # (B,)
    return torch.where(dropped[:, None], torch.full_like(codes, NULL_CONDITION), codes)


def guided(predict, codes: torch.Tensor | None, guidance_scale: float | None) -> torch.Tensor:
    """Classifier-free guidance of any prediction that is affine in the model's output (noise, clean point,
    velocity): f_uncond + w (f_cond - f_uncond) (Ho & Salimans 2022, eq. 6, their w + 1 as our w), exactly the
    conditional output at w = 1 and the unconditional one at w = 0 (torch.lerp). predict: codes -> (B, d)."""
    if guidance_scale is None:
        return predict(codes)
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0 (1: conditional, 0: unconditional), got {guidance_scale}.")
    if codes is None:
        raise ValueError("Classifier-free guidance mixes a conditional and an unconditional prediction: it needs "
                         "a model with condition keys and the codes to condition on (or guidance_scale=None).")
    return torch.lerp(predict(torch.full_like(codes, NULL_CONDITION)), predict(codes), float(guidance_scale))


def input_gradient(fn, x: torch.Tensor) -> torch.Tensor:
    """grad_x sum_i fn(x)_i by autograd, also under ``torch.no_grad()`` (samplers run there): the gradient of a
    per-row scalar (an energy, a classifier's log-probability). fn: (B, d) -> (B,); x: (B, d) -> (B, d)."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x_in).sum(), x_in)[0]


def increasing_times(times, length: int | None, fix: str) -> torch.Tensor:
    """times: (L,) strictly increasing labels of a sequence's positions (days, pseudotime bins) -> float tensor.

    length: the number of positions they must label (None: any). fix: what the caller's user should do, said
    after the error (an SSM and a world model step forward in time for different reasons).
    """
    times = torch.as_tensor(times, dtype=torch.float32)
    if times.dim() != 1 or (length is not None and len(times) != length):
        raise ValueError(f"times must be a 1-D tensor with one time label per sequence position "
                         f"({length if length is not None else 'L'}), got shape {tuple(times.shape)}.")
    if len(times) > 1 and not bool((times[1:] > times[:-1]).all()):
        raise ValueError(f"{fix}: times must be strictly increasing, got {times.tolist()}. Sort the inputs by time "
                         "(e.g. days 0, 2, 4, 7) and drop repeated labels.")
    return times
