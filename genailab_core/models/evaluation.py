"""Evaluation that needs a model: held-out ELBO and importance-sampled log-likelihood over batches.

The metrics in ``genailab_core.metrics`` take arrays; these functions run a model over a loader
and return a number, so they live with the models.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


@torch.no_grad()
def mean_over_batches(per_cell_fn, batches: Iterable[dict], device: str | torch.device = "cpu",
                      conditions=None) -> float:
    """Mean over all cells of ``per_cell_fn(x, c) -> (batch,)``; c = ``conditions(batch)`` (or None)."""
    values = []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        values.append(per_cell_fn(batch["x"], conditions(batch) if conditions else None).cpu())
    return float(torch.cat(values).mean())


def heldout_elbo(model, batches: Iterable[dict], n_repeats: int = 1) -> float:
    """Mean per-cell ELBO (nats) on held-out cells, averaged over ``n_repeats`` draws of z."""
    model.eval()
    device = next(model.parameters()).device
    return float(np.mean([mean_over_batches(model.elbo, batches, device, _conditions_of(model))
                          for _ in range(n_repeats)]))


def marginal_log_likelihood(model, batches: Iterable[dict], n_samples: int = 100) -> float:
    """Mean per-cell importance-sampled log p(x) (Burda et al. 2016), ``n_samples`` draws of q(z|x)."""
    model.eval()
    device = next(model.parameters()).device
    return mean_over_batches(lambda x, c: model.log_likelihood_is(x, c, n_samples=n_samples), batches, device,
                             _conditions_of(model))


def _conditions_of(model):
    """The model's way to read condition codes from a batch, if it is conditional."""
    return getattr(model, "conditions", None)


