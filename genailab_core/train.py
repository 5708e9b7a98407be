"""One readable training loop for every model of the book.

A model owns ``loss(batch) -> LossOutput`` (optionally ``loss(batch, kl_weight=...)``); ``fit``
does the rest: Adam, KL warm-up, gradient clipping, validation, early stopping, a NaN/Inf
guard, atomic checkpoints with resume, a tqdm progress bar and a history DataFrame.
"""
from __future__ import annotations

import copy
import inspect
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from tqdm import tqdm


@dataclass
class LossOutput:
    """What ``model.loss(batch)`` returns: the scalar to minimize and its named terms (means per cell)."""

    loss: torch.Tensor
    reconstruction: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """All terms as floats, for logging."""
        out = {"loss": float(self.loss.detach())}
        for name in ("reconstruction", "kl"):
            if getattr(self, name) is not None:
                out[name] = float(getattr(self, name).detach())
        out.update({k: float(v.detach()) for k, v in self.terms.items()})
        return out


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN/Inf; the message names the step and the loss terms."""


def kl_weight_at(epoch: int, warmup_epochs: float) -> float:
    """Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): 0 -> 1 over ``warmup_epochs``."""
    return 1.0 if warmup_epochs <= 0 else min(1.0, epoch / warmup_epochs)


def fit(model: torch.nn.Module, train: Iterable[dict], val: Iterable[dict] | None = None, *,
        epochs: int = 100, lr: float = 1e-3, weight_decay: float = 0.0, kl_warmup_epochs: float = 0,
        grad_clip: float | None = None, patience: int | None = None, checkpoint: str | Path | None = None,
        resume: bool = False, overwrite: bool = False, progress: bool = True,
        device: str | torch.device | None = None) -> pd.DataFrame:
    """Train ``model`` on batches from ``train``; return the per-epoch history.

    kl_warmup_epochs: epochs over which the KL weight rises linearly to 1 (models whose ``loss``
        takes ``kl_weight``); validation always uses weight 1, i.e. the true negative ELBO.
    patience: stop when the validation loss has not improved for this many epochs after warm-up,
        and restore the best weights.
    checkpoint: file written atomically after every epoch; an existing file is an error unless
        ``resume=True`` (continue from it) or ``overwrite=True``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    takes_kl = "kl_weight" in inspect.signature(model.loss).parameters
    rows, start = _prepare_checkpoint(model, optimizer, checkpoint, resume, overwrite)
    best = (math.inf, None, start)
    bar = tqdm(range(start, epochs), desc=type(model).__name__, disable=not progress, file=sys.stdout,
               mininterval=1.0, initial=start, total=epochs)
    for epoch in bar:
        tic = time.perf_counter()
        weight = kl_weight_at(epoch, kl_warmup_epochs)
        model.train()
        train_terms = _run_epoch(model, train, device, epoch, optimizer, grad_clip,
                                 {"kl_weight": weight} if takes_kl else {})
        row = {"epoch": epoch + 1, "kl_weight": weight, **{f"train_{k}": v for k, v in train_terms.items()}}
        if val is not None:
            model.eval()
            with torch.no_grad():
                val_terms = _run_epoch(model, val, device, epoch, None, None, {"kl_weight": 1.0} if takes_kl else {})
            row.update({f"val_{k}": v for k, v in val_terms.items()})
        row["seconds"] = time.perf_counter() - tic
        rows.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss")})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, rows)
        monitored = row.get("val_loss", row["train_loss"])
        if weight >= 1.0 and monitored < best[0]:
            best = (monitored, copy.deepcopy(model.state_dict()), epoch)
        if patience is not None and weight >= 1.0 and epoch - best[2] >= patience:
            bar.write(f"early stopping at epoch {epoch + 1}: no improvement for {patience} epochs "
                      f"(best {best[0]:.4f} at epoch {best[2] + 1}); best weights restored")
            break
    bar.close()
    if patience is not None and best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    return pd.DataFrame(rows)


def _run_epoch(model, batches, device, epoch, optimizer, grad_clip, loss_kwargs) -> dict[str, float]:
    """One pass over ``batches``; trains when ``optimizer`` is given. Returns cell-weighted means."""
    sums: dict[str, float] = {}
    n_total = 0
    for step, batch in enumerate(batches):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        out = model.loss(batch, **loss_kwargs)
        _guard_finite(out, epoch, step)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if not torch.isfinite(norm):
                    raise TrainingDiverged(f"Gradient norm is {float(norm)} at epoch {epoch + 1}, step {step}; "
                                           f"loss terms: {out.scalars()}. Lower the learning rate.")
            optimizer.step()
        n = _batch_size(batch)
        n_total += n
        for key, value in out.scalars().items():
            sums[key] = sums.get(key, 0.0) + value * n
    return {k: v / max(n_total, 1) for k, v in sums.items()}


def _guard_finite(out: LossOutput, epoch: int, step: int) -> None:
    if not torch.isfinite(out.loss):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in out.scalars().items())
        raise TrainingDiverged(
            f"Training diverged at epoch {epoch + 1}, step {step}: the loss is not finite ({terms}). "
            "Lower the learning rate, add gradient clipping (grad_clip=...), or check the input for NaN/Inf.")


def _batch_size(batch: dict) -> int:
    first = next(v for v in batch.values() if torch.is_tensor(v))
    return int(first.shape[0])


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    history: list[dict]) -> None:
    """Write atomically: to a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
                "history": history, "epoch": len(history)}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> list[dict]:
    """Restore weights (and optimizer state); return the history rows saved with them."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return list(state["history"])


def _prepare_checkpoint(model, optimizer, checkpoint, resume, overwrite) -> tuple[list[dict], int]:
    if checkpoint is None or not Path(checkpoint).exists():
        return [], 0
    if resume:
        rows = load_checkpoint(checkpoint, model, optimizer)
        return rows, len(rows)
    if not overwrite:
        raise FileExistsError(
            f"Checkpoint {checkpoint} already exists. Pass resume=True to continue training from it, "
            "overwrite=True to replace it, or choose another path.")
    return [], 0
