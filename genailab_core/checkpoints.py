"""Training checkpoints: written atomically, never overwritten by accident, and complete enough that a
resumed run gives the same weights as one that never stopped (weights, optimizer, LR schedule, step
hooks such as an EMA, the RNG states and the history, whose length is the loader's next epoch)."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


class CheckpointMismatch(ValueError):
    """The checkpoint was written by a different model (other parameters or shapes)."""


@dataclass
class ResumeState:
    """Where training starts: the history so far and the optimizer step (both empty for a new run)."""

    history: list[dict] = field(default_factory=list)
    step: int = 0


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer=None, scheduler=None,
                    hooks: Sequence = (), history: Sequence[dict] = (), step: int = 0) -> None:
    """Write to a temporary file in the same folder, then ``os.replace``: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "model_class": type(model).__name__,
             "optimizer": optimizer.state_dict() if optimizer is not None else None,
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "hooks": [h.state_dict() if hasattr(h, "state_dict") else None for h in hooks],
             "history": list(history), "step": step, "rng": _rng_state()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer=None, scheduler=None,
                    hooks: Sequence = (), restore_rng: bool = False) -> ResumeState:
    """Restore what ``save_checkpoint`` wrote into the given objects; return the history and step."""
    device = next(model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=False)
    _check_same_model(path, state, model)
    model.load_state_dict(state["model"])
    for target, key in ((optimizer, "optimizer"), (scheduler, "scheduler")):
        if target is not None and state.get(key) is not None:
            target.load_state_dict(state[key])
    for hook, hook_state in zip(hooks, state.get("hooks", [])):
        if hook_state is not None and hasattr(hook, "load_state_dict"):
            hook.load_state_dict(hook_state)
    if restore_rng:
        _set_rng_state(state["rng"])
    return ResumeState(list(state["history"]), int(state.get("step", 0)))


def prepare_checkpoint(checkpoint, resume: bool, overwrite: bool, model, optimizer, scheduler,
                       hooks) -> ResumeState:
    """A new run, or a resumed one; refuse to overwrite an existing checkpoint unless told to."""
    if checkpoint is None or not Path(checkpoint).exists():
        return ResumeState()
    if resume:
        return load_checkpoint(checkpoint, model, optimizer, scheduler, hooks, restore_rng=True)
    if not overwrite:
        raise FileExistsError(
            f"Checkpoint {checkpoint} already exists. Pass resume=True to continue training from it, "
            "overwrite=True to replace it, or choose another path.")
    return ResumeState()


def _check_same_model(path, state: dict, model: torch.nn.Module) -> None:
    saved, current = state["model"], model.state_dict()
    differ = sorted(set(saved) ^ set(current))
    reshaped = sorted(k for k in set(saved) & set(current) if saved[k].shape != current[k].shape)
    if differ or reshaped:
        detail = (f"parameters only in one of them: {differ[:5]}" if differ else
                  f"parameters of another shape: {[(k, tuple(saved[k].shape), tuple(current[k].shape)) for k in reshaped[:5]]}")
        raise CheckpointMismatch(
            f"Checkpoint {path} was written by a different model ({state.get('model_class', '?')} vs "
            f"{type(model).__name__}; {detail}). Build the model with the settings it was trained with, or "
            "start a new run with another checkpoint path.")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
