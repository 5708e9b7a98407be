"""What ``fit()`` optimizes with: AdamW over parameter groups, the LR schedule, and an EMA of the weights."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

SCHEDULES = ("constant", "cosine")


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   param_groups: Sequence[dict] | None = None) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over the trainable parameters only (frozen ones, e.g. a base model
    under LoRA adapters, are left out). Weight decay applies to matrices, not to biases, norms or per-gene
    vectors (nanoGPT's rule: parameters with 2 or more dimensions)."""
    if param_groups is not None:
        return torch.optim.AdamW(list(param_groups), lr=lr, weight_decay=weight_decay, fused=_fusable(model))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"{type(model).__name__} has no trainable parameter (all have requires_grad=False).")
    decayed = [p for p in trainable if p.dim() >= 2]
    groups = [{"params": decayed, "weight_decay": weight_decay},
              {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=_fusable(model))


def _fusable(model: torch.nn.Module) -> bool:
    """torch's fused AdamW kernel (one pass over all parameters instead of a loop over tensors) exists for
    float parameters on the CPU and CUDA."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())


def lr_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                schedule: str = "constant") -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplier of the base LR at each step: linear warm-up over ``warmup_steps`` (Goyal et al. 2017), then
    constant, or cosine decay to 0 at ``total_steps`` (Loshchilov & Hutter 2017, SGDR without restarts)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; choose one of {SCHEDULES}.")
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"warmup_steps must be >= 0 and the budget >= 1 step, got {warmup_steps}, {total_steps}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of a model's weights, a step hook for ``fit(hooks=[ema])``.

        theta_ema <- d_n * theta_ema + (1 - d_n) * theta        after the n-th optimizer step

    (Polyak & Juditsky 1992; used for sampling by DDPM/DiT and as the target network of BYOL/JEPA).
    With ``warmup`` (the default) d_n = min(decay, (1 + n) / (10 + n)) (TensorFlow's ``num_updates`` rule,
    diffusers' EMA warm-up): a fixed decay of 0.999 would keep 45% of the first step's weights after 800
    steps, so a short run's average would still be mostly the untrained network. Without it d_n = decay.
    ``ema.module`` is a copy of the model holding the averaged weights (and buffers), ready to sample
    from. Built on ``torch.optim.swa_utils.AveragedModel`` (the first update copies the weights).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}.")
        self.decay, self.warmup = decay, warmup
        if warmup:
            self.averaged = AveragedModel(model, avg_fn=self._warm_average, use_buffers=True)
        else:
            self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)

    def current_decay(self, n_averaged) -> float:
        """d_n after ``n_averaged`` earlier updates."""
        n = float(n_averaged)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def _warm_average(self, averaged: torch.Tensor, current: torch.Tensor, n_averaged) -> torch.Tensor:
        d = self.current_decay(n_averaged)
        return d * averaged + (1 - d) * current

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    def __call__(self, model: torch.nn.Module, step: int) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)
