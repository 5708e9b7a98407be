"""genailab_core: the models, data and tools behind the GenAI Lab book.

A chapter needs only ``import genailab_core as gl``: ``gl.setup`` for the run, ``gl.data`` for
data sets, ``gl.models`` for models, ``gl.fit`` to train them, ``gl.metrics`` to score them,
``gl.plotting`` and ``gl.widgets`` to show them, ``gl.show_source`` to read their key lines; Part III adds
``gl.schedules`` (noise schedules and paths) and ``gl.samplers``.
"""
from . import data, distributions, metrics, models, nn, plotting, prose, samplers, schedules, train, widgets
from .book import show_source
from .config import (PROFILES, Run, Settings, UnknownProfileError, resolve_profile, seed_everything, set_cpu_threads,
                     setup)
from .optim import EMA
from .published import published
from .train import LossOutput, fit

__version__ = "0.1.0"
__all__ = ["EMA", "PROFILES", "LossOutput", "Run", "Settings", "UnknownProfileError", "data", "distributions", "fit",
           "metrics", "models", "nn", "plotting", "prose", "published", "samplers", "schedules", "resolve_profile", "seed_everything", "set_cpu_threads", "setup",
           "show_source", "train", "widgets", "__version__"]
