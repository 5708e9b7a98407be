"""One readable training loop for every model of the book.

A model owns ``loss(batch, step=None) -> LossOutput`` (``step`` is the optimizer step; None when
evaluating). ``fit`` does the rest, whatever the model: AdamW over the trainable parameters (with
parameter groups), linear LR warm-up and cosine decay, budgets in epochs or steps, gradient clipping,
step hooks (an :class:`EMA` of the weights, a target network), validation, early stopping with the
best weights restored, AMP on CUDA, a divergence guard that names the step and the loss terms, and
atomic checkpoints from which a resumed run continues exactly as if it had not stopped.
Losses are summed on the device and read once per epoch, so the loop never waits on the GPU.
"""
from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from tqdm import tqdm

from .checkpoints import CheckpointMismatch, load_checkpoint, prepare_checkpoint, save_checkpoint
from .models.base import LossOutput
from .optim import EMA, lr_schedule, make_optimizer

__all__ = ["EMA", "CheckpointMismatch", "LossOutput", "TrainingDiverged", "fit", "load_checkpoint",
           "lr_schedule", "make_optimizer", "save_checkpoint"]

StepHook = Callable[[torch.nn.Module, int], None]


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN/Inf; the message names the step and the loss terms."""


def fit(model: torch.nn.Module, train: Iterable[dict], val: Iterable[dict] | None = None, *,
        epochs: int | None = None, steps: int | None = None, lr: float = 1e-3, weight_decay: float = 0.0,
        param_groups: Sequence[dict] | None = None, warmup_steps: int = 0, schedule: str = "constant",
        grad_clip: float | None = None, hooks: Sequence[StepHook] = (), patience: int | None = None,
        checkpoint: str | Path | None = None, resume: bool = False, overwrite: bool = False,
        amp: bool = False, progress: bool = True, device: str | torch.device | None = None) -> pd.DataFrame:
    """Train ``model`` on batches from ``train`` for ``epochs`` (or ``steps``); return the per-epoch history.

    param_groups: torch-style groups (``{"params": [...], "lr": ...}``); default: every trainable
        parameter, with ``weight_decay`` on matrices only (not biases or norms), as in GPT-2/nanoGPT.
    warmup_steps, schedule: linear LR warm-up, then "constant" or "cosine" decay to 0 at the last step.
    hooks: callables ``hook(model, step)`` run after every optimizer step (e.g. an :class:`EMA`; its
        state is checkpointed too).
    patience: stop when the validation loss (else the training loss) has not improved for this many
        epochs, and restore the best weights.
    checkpoint: written atomically after every epoch; an existing file is an error unless ``resume=True``
        (continue from it: weights, optimizer, schedule, hooks, RNG and the loader's epoch) or ``overwrite=True``.
    amp: bfloat16 autocast on CUDA (ignored elsewhere).
    """
    if (epochs is None) == (steps is None):
        raise ValueError(f"Give a budget as exactly one of epochs= or steps= (got epochs={epochs}, steps={steps}).")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    n_batches = len(train)
    total_steps = steps if steps is not None else epochs * n_batches
    max_epochs = epochs if epochs is not None else math.ceil(steps / n_batches)
    optimizer = make_optimizer(model, lr, weight_decay, param_groups)
    scheduler = lr_schedule(optimizer, warmup_steps, total_steps, schedule)
    state = prepare_checkpoint(checkpoint, resume, overwrite, model, optimizer, scheduler, hooks)
    rows, step = state.history, state.step
    best = _Best(patience, model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    bar = tqdm(total=max_epochs, initial=len(rows), desc=type(model).__name__, disable=not progress,
               file=sys.stdout, mininterval=1.0)
    for epoch in range(len(rows), max_epochs):
        if step >= total_steps:
            break
        tic = time.perf_counter()
        _set_epoch(train, epoch)
        model.train()
        train_terms, step = _train_epoch(model, train, device, optimizer, scheduler, hooks, grad_clip,
                                         autocast, step, total_steps, epoch)
        row = {"epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
               **{f"train_{k}": v for k, v in train_terms.items()}}
        if val is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, val, device, autocast).items()})
        row["seconds"] = time.perf_counter() - tic
        rows.append(row)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss")})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, hooks, rows, step)
        if best.update(row, epoch):
            bar.write(f"early stopping at epoch {epoch + 1}: no improvement for {patience} epochs "
                      f"(best {best.value:.4f} at epoch {best.epoch + 1}); best weights restored")
            break
    bar.close()
    best.restore()
    model.eval()
    return pd.DataFrame(rows)


def _train_epoch(model, batches, device, optimizer, scheduler, hooks, grad_clip, autocast, step, total_steps,
                 epoch) -> tuple[dict[str, float], int]:
    """One pass (or the rest of the step budget); returns cell-weighted mean terms and the new step."""
    sums, n_cells = None, 0
    first_bad = torch.full((), -1, device=device)                   # first non-finite step, kept on device
    for batch in batches:
        if step >= total_steps:
            break
        batch = _to_device(batch, device)
        with autocast:
            out = model.loss(batch, step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        values = _values(out)                                        # (n_terms,), detached
        if grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(_trainable(model), grad_clip)
            values = torch.cat([values, norm.detach().reshape(1)])
        bad = ~torch.isfinite(values).all()
        first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
        optimizer.step()
        scheduler.step()
        step += 1
        for hook in hooks:
            hook(model, step)
        n = _batch_size(batch)
        sums = values * n if sums is None else sums + values * n
        n_cells += n
    if sums is None:
        raise ValueError("The training loader yielded no batch; give it at least one cell.")
    names = ["loss", *out.terms] + (["grad_norm"] if grad_clip is not None else [])
    return _read(sums, n_cells, names, first_bad, epoch), step


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], device=None, autocast=None) -> dict[str, float]:
    """Cell-weighted mean of ``model.loss(batch)`` and its terms over ``batches``, in eval mode (step=None)."""
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    sums, n_cells, out = None, 0, None
    for batch in batches:
        batch = _to_device(batch, device)
        with autocast if autocast is not None else contextlib.nullcontext():
            out = model.loss(batch)
        n = _batch_size(batch)
        sums = _values(out) * n if sums is None else sums + _values(out) * n
        n_cells += n
    if out is None:
        raise ValueError("The validation loader yielded no batch; give it at least one cell.")
    return dict(zip(["loss", *out.terms], (sums / n_cells).tolist()))


def _read(sums, n_cells, names, first_bad, epoch) -> dict[str, float]:
    """Bring the epoch's sums to the host (the one synchronisation) and stop if a step diverged."""
    values = (sums / max(n_cells, 1)).tolist()
    bad_step = int(first_bad)
    if bad_step >= 0 or not all(math.isfinite(v) for v in values):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values))
        raise TrainingDiverged(
            f"Training diverged at epoch {epoch + 1}, step {bad_step}: a loss term or the gradient norm is not "
            f"finite (epoch means: {terms}). Lower the learning rate, add gradient clipping (grad_clip=...), "
            "or check the input for NaN/Inf. The checkpoint, if any, still holds the last finite epoch.")
    return dict(zip(names, values))


def _values(out: LossOutput) -> torch.Tensor:
    """The loss and its terms as one detached float32 vector (n_terms,)."""
    if not isinstance(out, LossOutput):
        raise TypeError(f"model.loss must return a LossOutput, got {type(out).__name__}.")
    return torch.stack([out.loss.detach().float(), *(v.detach().float() for v in out.terms.values())])


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _batch_size(batch: dict) -> int:
    return int(next(v for v in batch.values() if torch.is_tensor(v)).shape[0])


def _set_epoch(loader, epoch: int) -> None:
    """Loaders with ``set_epoch`` (CountBatches, DistributedSampler) shuffle by epoch: a resumed run sees
    the same order as an uninterrupted one."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)


class _Best:
    """Tracks the best monitored loss and its weights for early stopping."""

    def __init__(self, patience: int | None, model: torch.nn.Module):
        self.patience, self.model = patience, model
        self.value, self.epoch, self.weights = math.inf, -1, None

    def update(self, row: dict, epoch: int) -> bool:
        """Record ``row``; True when training should stop."""
        if self.patience is None:
            return False
        monitored = row.get("val_loss", row["train_loss"])
        if monitored < self.value:
            self.value, self.epoch = monitored, epoch
            self.weights = copy.deepcopy(self.model.state_dict())
        return epoch - self.epoch >= self.patience

    def restore(self) -> None:
        if self.weights is not None:
            self.model.load_state_dict(self.weights)
