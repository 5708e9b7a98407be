"""Adapting a pretrained network to a new task: resource presets, bottleneck adapters, freezing strategies,
a classifier on a pretrained encoder, and what a training step costs in memory.

LoRA, the low-rank update of linear layers, lives in :mod:`genailab_core.models.lora`. Here:

- **resource presets** (``small``, ``medium``, ``large``): model width, genes, batch size and LoRA rank chosen
  from the detected hardware (CPU cores and memory, a CUDA device and its memory, Apple MPS);
- **bottleneck adapters** (Houlsby et al. 2019): h <- h + W_up f(W_down h) after chosen layers, W_up = 0 at
  the start so that the adapted network is the pretrained one;
- **freezing strategies**: train only the head, the last k blocks and the head, or the norms and the head;
- :class:`EncoderClassifier`: a pretrained encoder plus a linear head, a model with ``loss()`` for ``gl.fit``;
- :func:`training_memory`: parameters, gradients, optimizer state and saved activations of one step.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import LossOutput

__all__ = ["PRESETS", "BottleneckAdapter", "EncoderClassifier", "Hardware", "ResourcePreset", "VAEFeatures",
           "WithAdapter", "add_adapters", "choose_preset", "count_parameters", "detect_hardware", "few_label_subset",
           "freeze_all_but_head", "freeze_all_but_last_blocks", "freeze_all_but_norms", "preset", "presets_table",
           "training_memory"]

NORMS = (nn.LayerNorm, nn.BatchNorm1d, nn.GroupNorm)


# -- resource presets ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    """What a run can use: CPU cores, memory (GB), a CUDA device (name, memory GB) or Apple MPS."""

    cpu_cores: int
    memory_gb: float
    cuda_name: str | None = None
    cuda_memory_gb: float = 0.0
    mps: bool = False


@dataclass(frozen=True)
class ResourcePreset:
    """The scale of an adaptation run: genes modelled, encoder width, cells per batch, LoRA rank, bfloat16."""

    name: str
    n_genes: int
    n_hidden: int
    batch_size: int
    lora_rank: int
    amp: bool
    when: str


PRESETS = {
    "small": ResourcePreset("small", n_genes=1000, n_hidden=128, batch_size=128, lora_rank=4, amp=False,
                            when="a laptop or shared CPU: < 8 cores or < 16 GB, no GPU"),
    "medium": ResourcePreset("medium", n_genes=2000, n_hidden=256, batch_size=256, lora_rank=8, amp=False,
                             when=">= 8 CPU cores and >= 16 GB, Apple MPS, or a CUDA GPU with < 16 GB"),
    "large": ResourcePreset("large", n_genes=4000, n_hidden=512, batch_size=1024, lora_rank=16, amp=True,
                            when="a CUDA GPU with >= 16 GB"),
}


def _memory_gb() -> float:
    """Physical memory in GB: psutil if installed, else POSIX sysconf (Linux, macOS); 0 if unknown."""
    try:
        import psutil

        return psutil.virtual_memory().total / 1e9
    except ImportError:
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        except (ValueError, OSError, AttributeError):
            return 0.0


def detect_hardware() -> Hardware:
    """The machine this process runs on (CUDA device 0 if there is one)."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return Hardware(cpu_cores=os.cpu_count() or 1, memory_gb=round(_memory_gb(), 1),
                    cuda_name=torch.cuda.get_device_name(0) if cuda else None,
                    cuda_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1) if cuda else 0.0,
                    mps=bool(mps))


def preset(name: str) -> ResourcePreset:
    """The preset called ``name`` ("small", "medium" or "large")."""
    if name not in PRESETS:
        raise ValueError(f"Unknown resource preset {name!r}; the presets are {list(PRESETS)} "
                         "(or choose_preset() to pick one from the hardware).")
    return PRESETS[name]


def choose_preset(hardware: Hardware | None = None) -> ResourcePreset:
    """The largest preset the hardware (default: :func:`detect_hardware`) can hold, by the rules in ``when``."""
    hw = detect_hardware() if hardware is None else hardware
    if hw.cuda_name is not None:
        return PRESETS["large" if hw.cuda_memory_gb >= 16 else "medium"]
    if hw.mps or (hw.cpu_cores >= 8 and hw.memory_gb >= 16):
        return PRESETS["medium"]
    return PRESETS["small"]


def presets_table(hardware: Hardware | None = None) -> pd.DataFrame:
    """Every preset as a row, with a column marking the one :func:`choose_preset` picks for ``hardware``."""
    chosen = choose_preset(hardware).name
    rows = [{**asdict(p), "chosen": "<-" if p.name == chosen else ""} for p in PRESETS.values()]
    return pd.DataFrame(rows).set_index("name")


# -- bottleneck adapters (Houlsby et al. 2019) ----------------------------------------------------------------------
class BottleneckAdapter(nn.Module):
    """h -> h + W_up relu(W_down h + b_down) + b_up (Houlsby et al. 2019, Fig. 2), W_up and b_up zero at the start.

    h: (..., n_features) -> (..., n_features); 2 * n_features * bottleneck + bottleneck + n_features parameters.
    """

    def __init__(self, n_features: int, bottleneck: int):
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"The adapter's bottleneck must be >= 1, got {bottleneck}.")
        self.down = nn.Linear(n_features, bottleneck)
        self.up = nn.Linear(bottleneck, n_features)
        nn.init.zeros_(self.up.weight)                                      # zero-init: the identity at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


class WithAdapter(nn.Module):
    """A frozen layer followed by a trainable :class:`BottleneckAdapter` on its output."""

    def __init__(self, layer: nn.Linear, bottleneck: int):
        super().__init__()
        self.layer = layer
        self.adapter = BottleneckAdapter(layer.out_features, bottleneck).to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.layer(x))


def add_adapters(module: nn.Module, bottleneck: int, targets: Sequence[str] | None = None) -> nn.Module:
    """Insert a bottleneck adapter after each ``nn.Linear`` of ``module`` named in ``targets`` (default all),
    freeze everything else in ``module``, and return ``module`` (changed in place)."""
    linear = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear) and name}
    if not linear:
        raise ValueError(f"add_adapters found no nn.Linear inside {type(module).__name__}; adapters follow linear layers.")
    chosen = [n for n in linear if targets is None or any(n == t or n.endswith("." + t) for t in targets)]
    if not chosen:
        raise ValueError(f"No linear layer matches targets={list(targets)}; the linear layers are {list(linear)}.")
    module.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, WithAdapter(linear[name], bottleneck))
    return module


# -- freezing strategies ------------------------------------------------------------------------------------------
def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _freeze_except(model: nn.Module, keep: Callable[[str, nn.Module], bool]) -> int:
    """Freeze every parameter, then unfreeze those of the submodules where ``keep(name, module)``; -> trainable."""
    model.requires_grad_(False)
    for name, sub in model.named_modules():
        if keep(name, sub):
            sub.requires_grad_(True)
    trainable = count_parameters(model)[0]
    if trainable == 0:
        raise ValueError("This freezing strategy leaves no trainable parameter; check the head's name.")
    return trainable


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_all_but_head(model: nn.Module, head: str = "head") -> int:
    """Train only the submodule called ``head`` (linear probing). Returns the number of trainable parameters."""
    _get(model, head)
    return _freeze_except(model, lambda name, _: _under(name, head))


def freeze_all_but_last_blocks(model: nn.Module, k: int, blocks: Sequence[str], head: str = "head") -> int:
    """Train the last ``k`` of the named ``blocks`` (in forward order) and the head. Returns trainable parameters."""
    if not 0 <= k <= len(blocks):
        raise ValueError(f"k must be between 0 and the {len(blocks)} blocks given, got {k}.")
    for name in (*blocks, head):
        _get(model, name)
    last = list(blocks[len(blocks) - k:])
    return _freeze_except(model, lambda name, _: any(_under(name, b) for b in (*last, head)))


def freeze_all_but_norms(model: nn.Module, head: str = "head") -> int:
    """Train only the normalisation layers' scales and shifts (and the head). Returns trainable parameters.

    Batch-norm running statistics are buffers, not parameters: in training mode they still follow the new
    data whatever is frozen. Layer norm keeps none.
    """
    _get(model, head)
    if not any(isinstance(m, NORMS) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no normalisation layer ({[n.__name__ for n in NORMS]}) to train.")
    return _freeze_except(model, lambda name, sub: isinstance(sub, NORMS) or _under(name, head))


def _get(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"{type(model).__name__} has no submodule {name!r}; its children are {names}.") from None


# -- a classifier on a pretrained encoder -----------------------------------------------------------------------------
class VAEFeatures(nn.Module):
    """The posterior mean of an unconditional :class:`~genailab_core.models.VAE`'s encoder as a network:
    counts x: (batch, genes) -> E_q[z | x]: (batch, n_latent), with the encoder's own input transform log1p.
    Holds copies of the encoder's layers (``body``, ``loc``), so adapting it leaves the VAE unchanged."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        if getattr(vae, "condition_keys", None) or getattr(vae, "likelihood", "nb") == "gaussian":
            raise ValueError("VAEFeatures reads an unconditional count VAE (its encoder sees log1p counts only).")
        self.body = copy.deepcopy(vae.encoder.body)
        self.loc = copy.deepcopy(vae.encoder.loc)
        self.n_out = self.loc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loc(self.body(torch.log1p(x)))


class EncoderClassifier(nn.Module):
    """p(y | x) = softmax(head(encoder(x))): a (pretrained) encoder with a linear head.

    encoder: x (batch, genes) -> (batch, n_features); head: a linear layer to ``n_classes`` logits. ``loss`` is
    the cross-entropy of the labels ``batch[label_key]``: (batch,) long, with the batch accuracy as a term.
    """

    def __init__(self, encoder: nn.Module, n_features: int, n_classes: int, label_key: str = "label"):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"A classifier needs at least 2 classes, got {n_classes}.")
        self.encoder, self.head, self.label_key = encoder, nn.Linear(n_features, n_classes), label_key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))                                   # logits: (batch, n_classes)

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        if self.label_key not in batch:
            raise KeyError(f"The batch has no labels {self.label_key!r}; build it with "
                           f"CountBatches(adata, condition_keys=[{self.label_key!r}]).")
        logits, y = self(batch["x"]), batch[self.label_key]
        loss = nn.functional.cross_entropy(logits, y)
        accuracy = (logits.argmax(-1) == y).float().mean()
        return LossOutput(loss=loss, terms={"accuracy": accuracy.detach()})

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """Predicted class codes of x: (cells, genes) -> (cells,), in eval mode."""
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([self(x[i:i + batch_size].to(device)).argmax(-1).cpu()
                          for i in range(0, len(x), batch_size)]).numpy()


def few_label_subset(labels: Sequence, fraction: float, seed: int, min_per_class: int = 2) -> np.ndarray:
    """Indices of a stratified ``fraction`` of labelled cells: round(fraction * n_c) per class c, at least
    ``min_per_class`` (or all n_c if fewer), drawn without replacement with ``seed``. Sorted indices."""
    if not 0 < fraction <= 1:
        raise ValueError(f"The label fraction must be in (0, 1], got {fraction}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in pd.unique(labels):
        members = np.flatnonzero(labels == c)
        n = min(len(members), max(min_per_class, int(round(fraction * len(members)))))
        chosen.append(rng.choice(members, n, replace=False))
    return np.sort(np.concatenate(chosen))


# -- what a training step holds in memory --------------------------------------------------------------------------
def training_memory(model: nn.Module, batch: dict[str, torch.Tensor], optimizer_states: int = 2) -> dict[str, int]:
    """Bytes a training step of ``model.loss(batch)`` holds, by part: ``parameters`` (all), ``gradients`` and
    ``optimizer`` (``optimizer_states`` tensors per trainable parameter: 2 for Adam/AdamW) for trainable ones,
    ``activations`` (every tensor autograd saves for the backward pass, counted with
    ``torch.autograd.graph.saved_tensors_hooks``; a tensor saved twice counts twice), and ``total``.
    A device-independent account: on CUDA compare with ``torch.cuda.max_memory_allocated``."""
    params = list(model.parameters())
    size = lambda ps: sum(p.numel() * p.element_size() for p in ps)          # noqa: E731
    trainable = [p for p in params if p.requires_grad]
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    out = {"parameters": size(params), "gradients": size(trainable), "optimizer": optimizer_states * size(trainable),
           "activations": saved[0]}
    out["total"] = sum(out.values())
    return out
