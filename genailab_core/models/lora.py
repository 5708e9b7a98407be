"""Low-rank adaptation (LoRA, Hu et al. 2022) of the linear layers of a pretrained network.

A frozen linear layer y = W x + b (W: (out, in)) gets a trainable low-rank update

    y = W x + b + (alpha / r) * B A x,      A: (r, in),  B: (out, r),  r << min(in, out)

(Hu et al. 2022, eq. 3). A starts Kaiming-uniform and B at zero, so the adapted network is exactly the
pretrained one at initialisation, and only r (in + out) numbers per layer are trained instead of in * out.
After training the update can be **merged** into the weight, W <- W + (alpha / r) B A, so that inference
costs nothing extra, and **unmerged** again to recover W. Only A and B need to be saved: an adapter is a few
kilobytes beside a pretrained model of megabytes.

The names and the initialisation follow Hugging Face ``peft`` (``lora_A``, ``lora_B``, ``scaling = alpha / r``,
``kaiming_uniform_(a=sqrt(5))``), so that a ``peft`` LoRA layer and this one compute the same function from the
same weights (tests/test_lora.py checks it).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "load_lora", "load_lora_state_dict", "lora_layers", "lora_state_dict",
           "merge_lora", "save_lora", "unmerge_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update scaled by ``alpha / rank``.

    x: (..., in_features) -> (..., out_features). ``alpha`` None means alpha = rank (scaling 1).
    ``dropout`` is applied to the input of the low-rank path only, as in ``peft``.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"The LoRA rank must be a positive integer, got {rank!r}.")
        self.base = base
        self.base.requires_grad_(False)                                     # W, b frozen
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.scaling = self.alpha / rank                                   # alpha / r (Hu et al. 2022, section 4.1)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))               # as peft's reset_lora_parameters
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / r) B A: (out_features, in_features)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)                                                    # W x + b (W + BA once merged)
        if self.merged:
            return y
        return y + self.scaling * (self.dropout(x) @ self.lora_A.T) @ self.lora_B.T   # + (alpha/r) B A x

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the layer becomes a plain linear layer of the same cost as the base."""
        if self.merged:
            raise RuntimeError("This LoRA layer is already merged; unmerge() it before merging again.")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: back to the frozen base weight plus a separate low-rank path."""
        if not self.merged:
            raise RuntimeError("This LoRA layer is not merged; there is nothing to unmerge.")
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


def _matches(name: str, targets: Sequence[str] | None) -> bool:
    """peft's rule: a target is a module's full name or the last part(s) of it ("loc" matches "encoder.loc")."""
    return targets is None or any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(module: nn.Module, rank: int, alpha: float | None = None, targets: Sequence[str] | None = None,
               dropout: float = 0.0) -> nn.Module:
    """Replace the ``nn.Linear`` submodules of ``module`` (those named in ``targets``, default all) by
    :class:`LoRALinear` in place, freeze every other parameter of ``module``, and return ``module``.

    Parameters outside ``module`` (e.g. a classifier head next to it) are not touched: apply LoRA to the
    pretrained part only. Raises ValueError when there is no linear layer to adapt.
    """
    if isinstance(module, nn.Linear):
        raise ValueError("apply_lora replaces linear layers inside a module in place; a bare nn.Linear has no "
                         "parent to hold the replacement. Wrap it first, e.g. nn.Sequential(linear).")
    if lora_layers(module):
        raise ValueError("This module already holds LoRA layers; apply_lora once per module "
                         "(merge_lora and a fresh apply_lora to stack a second adapter).")
    linear = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    if not linear:
        kinds = sorted({type(m).__name__ for m in module.modules()})
        raise ValueError(f"apply_lora found no nn.Linear in {type(module).__name__} (it holds {kinds}); LoRA "
                         "adapts linear layers only.")
    chosen = [name for name in linear if _matches(name, targets)]
    if not chosen:
        raise ValueError(f"No linear layer matches targets={list(targets)}; the linear layers are {list(linear)}.")
    module.requires_grad_(False)                                            # the pretrained weights stay fixed
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, LoRALinear(linear[name], rank, alpha, dropout))
    return module


def lora_layers(module: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA layers of ``module`` by name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinear)}


def _require_lora(module: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(module)
    if not layers:
        raise ValueError(f"{type(module).__name__} holds no LoRA layer; call apply_lora(module, rank) first.")
    return layers


def merge_lora(module: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``module`` (W <- W + (alpha/r) B A); returns ``module``."""
    for layer in _require_lora(module).values():
        layer.merge()
    return module


def unmerge_lora(module: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (W <- W - (alpha/r) B A); returns ``module``."""
    for layer in _require_lora(module).values():
        layer.unmerge()
    return module


def lora_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights: ``{"<layer>.lora_A": (r, in), "<layer>.lora_B": (out, r)}`` (copies, on CPU)."""
    state = {}
    for name, layer in _require_lora(module).items():
        prefix = f"{name}." if name else ""
        state[prefix + "lora_A"] = layer.lora_A.detach().cpu().clone()
        state[prefix + "lora_B"] = layer.lora_B.detach().cpu().clone()
    return state


@torch.no_grad()
def load_lora_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy adapter weights from :func:`lora_state_dict` into the LoRA layers of ``module`` (same names and
    shapes, else ValueError). A merged layer is unmerged first and merged again with the new weights."""
    layers = _require_lora(module)
    expected = set(lora_state_dict(module))
    if set(state) != expected:
        raise ValueError(f"The adapter does not fit this module: missing {sorted(expected - set(state))}, "
                         f"unexpected {sorted(set(state) - expected)}. Apply LoRA to the same layers first.")
    for name, layer in layers.items():
        prefix = f"{name}." if name else ""
        a, b = state[prefix + "lora_A"], state[prefix + "lora_B"]
        if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
            raise ValueError(f"Layer {name!r}: the adapter has A {tuple(a.shape)}, B {tuple(b.shape)} but the module "
                             f"expects A {tuple(layer.lora_A.shape)}, B {tuple(layer.lora_B.shape)} (another rank?).")
        was_merged = layer.merged
        if was_merged:
            layer.unmerge()
        layer.lora_A.copy_(a)
        layer.lora_B.copy_(b)
        if was_merged:
            layer.merge()
    return module


def save_lora(module: nn.Module, path: str | Path) -> Path:
    """Write only the adapter (A, B of every LoRA layer, with each layer's rank and alpha) to ``path``."""
    config = {name: {"rank": layer.rank, "alpha": layer.alpha} for name, layer in _require_lora(module).items()}
    path = Path(path)
    torch.save({"lora": lora_state_dict(module), "config": config}, path)
    return path


def load_lora(module: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter written by :func:`save_lora` into ``module``, whose LoRA layers must have the same names,
    ranks and alphas (a different alpha would silently rescale the update, so it is an error)."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    ours = {name: {"rank": layer.rank, "alpha": layer.alpha} for name, layer in _require_lora(module).items()}
    if saved["config"] != ours:
        raise ValueError(f"The adapter at {path} was saved with LoRA settings {saved['config']}, but this module has "
                         f"{ours}; apply_lora with the same rank, alpha and targets before loading.")
    return load_lora_state_dict(module, saved["lora"])
