"""Classifier guidance (Dhariwal & Nichol 2021, section 4; Song et al. 2021, section 5 and app. I.4).

A classifier p_phi(y | x_t, t) trained on noised data steers an unconditional score model toward a class:

    grad_x log p_t(x | y) = grad_x log p_t(x) + grad_x log p_t(y | x)           (Bayes' rule),

and a scale s > 1 sharpens the conditional, grad log p_t(x) + s grad log p_t(y | x) (Dhariwal & Nichol 2021,
Alg. 1-2). The classifier must see noisy inputs at every t: a classifier of clean cells is useless at large t.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import ConditionalMLP
from ..schedules import Schedule
from .base import LossOutput
from .diffusion import largest_time
from .tensors import batch_times, input_gradient

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TimeConditionalClassifier(ConditionalMLP):
    """(x_t, t) -> class logits: the ``ConditionalMLP`` (residual FiLM blocks on an embedding of t, no batch
    norm) with ``n_classes`` outputs, zero-initialized so that an untrained classifier is uniform.

    x: (B, n_in), t: (B,) -> logits (B, n_classes).
    """

    def __init__(self, n_in: int, n_classes: int, n_hidden: int = 128, n_layers: int = 2, time_dim: int = 64,
                 dropout: float = 0.0):
        if n_classes < 2:
            raise ValueError(f"A classifier needs n_classes >= 2, got {n_classes}.")
        super().__init__(n_in, n_hidden, n_layers, time_dim, dropout=dropout, n_out=n_classes)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().forward(x, batch_times(t, x))


class NoiseAwareClassifier(nn.Module):
    """p_phi(y | x_t, t) for x_t drawn from ``schedule`` (Dhariwal & Nichol 2021, section 4.1).

    network: ``(x_t: (B, d), t: (B,)) -> logits (B, n_classes)``, e.g. ``TimeConditionalClassifier``.
    label_key: the batch entry holding the long (B,) class labels.
    Training times are t ~ U(t_min, t_max), t_max = 1 (1 - 1e-3 where alpha_1 = 0).
    """

    def __init__(self, network: nn.Module, schedule: Schedule, label_key: str, t_min: float = 1e-3):
        super().__init__()
        t_max = largest_time(schedule)
        if not 0.0 <= t_min < t_max:
            raise ValueError(f"t_min must lie in [0, {t_max}), got {t_min}.")
        self.network, self.schedule, self.label_key = network, schedule, label_key
        self.t_min, self.t_max = t_min, t_max

    def log_prob(self, x: torch.Tensor, t, y) -> torch.Tensor:
        """log p_phi(y | x_t, t). x: (B, d); t: float or (B,); y: an int or (B,) long -> (B,)."""
        logits = self.network(x, batch_times(t, x))                                         # (B, K)
        y = torch.as_tensor(y, dtype=torch.long, device=x.device).reshape(-1)
        if y.numel() not in (1, x.shape[0]):
            raise ValueError(f"y must be one class or one per row of x ({x.shape[0]}), got {y.numel()} labels.")
        y = y.expand(x.shape[0])
        if y.numel() and (y.min() < 0 or y.max() >= logits.shape[-1]):
            raise ValueError(f"Class labels must lie in 0..{logits.shape[-1] - 1}, got {y.min()}..{y.max()}.")
        return logits.log_softmax(-1).gather(-1, y[:, None])[:, 0]

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """Cross-entropy of the labels given x_t ~ q(x_t | x_0), t ~ U(t_min, t_max), mean over cells."""
        if self.label_key not in batch:
            raise ValueError(f"The batch has no label entry {self.label_key!r}; its entries are {list(batch)}. "
                             f"Build it with CountBatches(adata, condition_keys=[{self.label_key!r}]).")
        x0, y = batch["x"], batch[self.label_key].long()
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(x0.shape[0], device=x0.device)      # (B,)
        logits = self.network(self.schedule.sample(x0, t).x_t, t)
        cross_entropy = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(-1) == y).float().mean()
        return LossOutput(loss=cross_entropy, terms={"cross_entropy": cross_entropy.detach(),
                                                     "accuracy": accuracy.detach()})


def classifier_gradient(classifier: NoiseAwareClassifier, x: torch.Tensor, t, y) -> torch.Tensor:
    """grad_x log p_phi(y | x_t, t) by autograd, also under ``torch.no_grad()`` (samplers run there).
    x: (B, d); t: float or (B,); y: an int or (B,) long -> (B, d)."""
    return input_gradient(lambda v: classifier.log_prob(v, t, y), x)


def classifier_guided_score(score_fn: Predictor, classifier: NoiseAwareClassifier, y, scale: float) -> Predictor:
    """The guided score s(x, t) + scale * grad_x log p_phi(y | x, t) (Dhariwal & Nichol 2021, eq. 10 and Alg. 1;
    Song et al. 2021, eq. 48 with the classifier's gradient scaled). scale = 1: the conditional score of Bayes'
    rule; 0: the unguided score. y: the class to steer toward, an int or (B,) long.

    score_fn: ``(x: (B, d), t: (B,)) -> (B, d)``; returns a function of the same signature, for ``samplers``.
    """
    if scale < 0:
        raise ValueError(f"The guidance scale must be >= 0 (1: the conditional score, 0: none), got {scale}.")

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score_fn(x, t) + scale * classifier_gradient(classifier, x, t, y)

    return guided


def classifier_guided_eps(eps_fn: Predictor, classifier: NoiseAwareClassifier, y, scale: float,
                          schedule: Schedule) -> Predictor:
    """The guided noise prediction of Dhariwal & Nichol (2021, eq. 14 and Alg. 2), for DDIM:

        eps_w(x_t, t) = eps(x_t, t) - scale * sigma_t * grad_x log p_phi(y | x_t, t),

    which is ``classifier_guided_score`` written in eps: eps = -sigma_t * score (Song et al. 2021, eq. 7's
    Gaussian q(x_t | x_0)), so -sigma_t (s + scale g) = eps - scale sigma_t g. scale = 1: the conditional
    model of Bayes' rule; 0: the unguided eps. y: the class to steer toward, an int or (B,) long.

    eps_fn: ``(x: (B, d), t: (B,)) -> (B, d)``, e.g. the unconditional ``Diffusion.eps``; returns a function
    of the same signature, for ``samplers.ddim``.
    """
    if scale < 0:
        raise ValueError(f"The guidance scale must be >= 0 (1: the conditional model, 0: none), got {scale}.")

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = batch_times(t, x)
        sigma = schedule.sigma(t).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))            # (B, 1)
        return eps_fn(x, t) - scale * sigma * classifier_gradient(classifier, x, t, y)

    return guided
