"""Profiles, device choice, seeding and the run directory of a chapter.

A chapter starts with ``run = genailab_core.setup(profile, seed=seed, name="02_vae")`` and ends
with ``run.finish(metrics)``. The profile sets the scale of everything in between:

=========  ==========================================================  ==========================
profile    purpose                                                      budget
=========  ==========================================================  ==========================
smoke      prove every code path runs (tests, nbval)                    <= 45 s per chapter, CPU
quick      real results at reduced scale; default on a CPU              <= 4 min per chapter, CPU
full       paper-scale results; default on a GPU; papermill runs        <= 15 min per chapter, GPU
=========  ==========================================================  ==========================
"""
from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILES = ("smoke", "quick", "full")
PROFILE_ENV = "GENAILAB_PROFILE"
RUN_DIR_ENV = "GENAILAB_RUN_DIR"
THREADS_ENV = "GENAILAB_THREADS"


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not one of ``auto``, ``smoke``, ``quick``, ``full``."""


def resolve_profile(profile: str = "auto", cuda_available: bool | None = None) -> str:
    """``auto`` -> ``$GENAILAB_PROFILE`` if set, else ``full`` on CUDA and ``quick`` on CPU."""
    name = (profile or "auto").strip().lower()
    if name == "auto":
        from_env = os.environ.get(PROFILE_ENV, "").strip().lower()
        if from_env:
            return resolve_profile(from_env, cuda_available)
        cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
        return "full" if cuda else "quick"
    if name not in PROFILES:
        raise UnknownProfileError(
            f"Unknown profile {profile!r}. Valid profiles are 'auto', {', '.join(map(repr, PROFILES))} "
            f"(set it in the notebook's parameters cell, with --profile, or with ${PROFILE_ENV})."
        )
    return name


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA if available, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_cpu_threads(threads: int | str | None = None) -> int:
    """Set torch's CPU threads: ``threads``, else ``$GENAILAB_THREADS``, else torch's default.

    Torch uses one thread per core by default, the fastest choice on an idle machine. When several
    chapters or other jobs share the cores, one thread each is faster: set ``GENAILAB_THREADS=1``.
    Returns the number of threads now in use.
    """
    value = threads if threads is not None else os.environ.get(THREADS_ENV, "").strip() or None
    if value is not None:
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise ValueError(f"CPU threads must be a positive integer, got {value!r} "
                             f"(from the threads argument or ${THREADS_ENV}).")
        torch.set_num_threads(count)
        _limit_numba_threads(count)
    return torch.get_num_threads()


def _limit_numba_threads(count: int) -> None:
    """Keep numba's parallel regions (scanpy's seurat_v3 HVG selection) at ``count`` threads. Numba's OpenMP
    layer shares libgomp with torch and sets its thread count before each parallel region, which silently
    undoes ``torch.set_num_threads`` (a 1-thread chapter then runs 2 OpenMP threads, and on busy cores its
    training slows by 10-50x)."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(count)                  # read when numba is first imported
        return
    import numba

    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so the same seed gives the same numbers on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def default_runs_root(cwd: Path | None = None) -> Path:
    """``runs/`` of the book when a chapter runs from its ``chapters/`` folder, else ``./runs``."""
    cwd = Path.cwd() if cwd is None else cwd
    if cwd.name == "chapters" and (cwd.parent / "_toc.yml").exists():
        return cwd.parent / "runs"
    return cwd / "runs"


def new_run_dir(name: str, root: str | Path | None = None) -> Path:
    """A fresh ``<root>/<name>/<timestamp>`` directory; an existing one is never reused."""
    if os.environ.get(RUN_DIR_ENV) and root is None:
        path = Path(os.environ[RUN_DIR_ENV])
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(root if root is not None else default_runs_root()) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        path, k = base / f"{stamp}-{k}", k + 1
    path.mkdir(parents=True)
    return path


class Settings(dict):
    """A dict of a chapter's settings with attribute access: ``cfg.epochs``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"No setting {key!r}; the settings are {sorted(self)}.") from None


@dataclass
class Run:
    """One execution of a chapter: its profile, seed, device and run directory."""

    profile: str
    seed: int
    device: torch.device
    run_dir: Path
    name: str = "chapter"
    settings: dict = field(default_factory=dict)

    def pick(self, smoke: dict | None = None, quick: dict | None = None, full: dict | None = None,
             **overrides: Any) -> Settings:
        """The settings for this run's profile; ``overrides`` that are not None win.

        A profile left out falls back to the next smaller one (full -> quick -> smoke).
        """
        table = {"smoke": smoke or {}, "quick": quick or smoke or {}, "full": full or quick or smoke or {}}
        chosen = Settings(table[self.profile])
        chosen.update({k: v for k, v in overrides.items() if v is not None})
        self.settings.update(chosen)
        _print_table(f"settings ({self.profile} profile)", chosen)
        return chosen

    def finish(self, metrics: dict[str, Any]) -> Path:
        """Print the results table and write ``metrics.json`` (with profile, seed, settings)."""
        clean = {k: _to_builtin(v) for k, v in metrics.items()}
        _print_table(f"results: {self.name}", clean)
        record = {"chapter": self.name, "profile": self.profile, "seed": self.seed,
                  "device": str(self.device), "settings": {k: _to_builtin(v) for k, v in self.settings.items()},
                  "metrics": clean, "finished": datetime.now().isoformat(timespec="seconds")}
        out = self.run_dir / "metrics.json"
        out.write_text(json.dumps(record, indent=2))
        print(f"metrics written to {out}")
        return out


def setup(profile: str = "auto", seed: int = 0, name: str = "chapter", device: str | None = None,
          run_root: str | Path | None = None, verbose: bool = True, threads: int | None = None) -> Run:
    """Resolve the profile, pick the device, set the CPU threads, seed everything, make the run directory."""
    resolved = resolve_profile(profile)
    n_threads = set_cpu_threads(threads)
    seed_everything(int(seed))
    run = Run(profile=resolved, seed=int(seed), device=pick_device(device),
              run_dir=new_run_dir(name, run_root), name=name)
    if verbose:
        _print_table("GenAI Lab run", {"chapter": name, "profile": resolved, "seed": seed,
                                       "device": str(run.device), "CPU threads": n_threads,
                                       "torch": torch.__version__,
                                       "run directory": str(run.run_dir)})
    return run


def _to_builtin(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers, so metrics serialize to JSON."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    return value


def _print_table(title: str, rows: dict[str, Any]) -> None:
    width = max([len(str(k)) for k in rows] + [8])
    print(title)
    print("-" * max(len(title), width + 20))
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{str(key):<{width}}  {shown}")
