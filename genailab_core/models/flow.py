"""Flow matching: regress a network on the velocity of a path between data and noise, then integrate it.

Conditional flow matching (Lipman et al. 2023; Liu et al. 2023's rectified flow; Albergo & Vanden-Eijnden
2023) draws a pair (x_0, x_1), a time t ~ U(0, 1) and the point x_t = alpha_t x_0 + sigma_t x_1 of the path
between them, and regresses v_theta(x_t, t) on the pair's velocity u_t = alpha'_t x_0 + sigma'_t x_1
(Lipman et al. 2023, eq. 23, the CFM loss). Its minimizer is the marginal velocity E[u_t | x_t], whose ODE
carries the noise distribution onto the data distribution.

Convention of the package (``schedules.py``): **t = 0 is the data, t = 1 the noise**, and the velocity is
d x_t / dt, pointing from data toward noise; sampling integrates from t = 1 down to t = 0. torchcfm and
Lipman et al. run time the other way: their t is our 1 - t and their u_t is minus ours.

How the two ends are paired (``coupling``):
- "independent": x_1 drawn independently of x_0 (I-CFM; Lipman et al. 2023, Liu et al. 2023).
- "ot": the minibatch's two ends paired by exact optimal transport on squared Euclidean cost (OT-CFM;
  Tong et al. 2024; Pooladian et al. 2023): straighter paths, fewer steps to sample.
- "given": the batch already holds coupled pairs, e.g. rectified flow's reflow pairs (Liu et al. 2023, Alg. 1).

The end at t = 1 is Gaussian noise, or, with ``source_key``, the cells in that entry of the batch (another
day of a time course, control cells): the same loss then learns a transport between two cell populations.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..schedules import LinearPath, Schedule
from .base import LossOutput
from .tensors import batch_codes, drop_conditions, guided, module_device

COUPLINGS = ("independent", "ot", "given")
PAIRED_KEY = "x1"        # where a "given" coupling finds the t = 1 end of each pair when source_key is None

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]     # (x: (B, d), t: (B,)) -> (B, d)


# -- minibatch optimal transport -------------------------------------------------------------------
def ot_plan(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """The exact OT plan between two minibatches with uniform weights and squared Euclidean cost
    (POT's network simplex, ``ot.emd``; Tong et al. 2024, eq. 17). x0: (n0, d), x1: (n1, d) -> (n0, n1),
    float64, rows summing to 1 / n0 and columns to 1 / n1."""
    import ot

    if x0.dim() != 2 or x1.dim() != 2 or x0.shape[1] != x1.shape[1]:
        raise ValueError(f"OT pairing needs two (batch, d) tensors with the same d, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}.")
    cost = torch.cdist(x0.detach().double(), x1.detach().double()).pow(2).cpu().numpy()   # (n0, n1)
    return ot.emd(ot.unif(len(x0)), ot.unif(len(x1)), cost)


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The exact minibatch OT assignment: index (n0,) into x1 such that (x0[i], x1[index[i]]) are OT pairs.

    With equal sizes the plan is a permutation matrix (a vertex of the Birkhoff polytope), so ``index`` is a
    permutation and every point of both sets is used once. With unequal sizes the plan splits mass: each x0[i]
    then draws its partner j with probability plan[i, j] / plan[i].sum(), so the pairs are a draw from the
    plan that keeps every x0 exactly once (torchcfm instead draws all pairs i.i.d. from the plan, with
    replacement, so some x0 repeat and others drop out). x0: (n0, d), x1: (n1, d).
    """
    plan = torch.from_numpy(ot_plan(x0, x1))                                # (n0, n1)
    index = plan.argmax(1)
    if len(x0) == len(x1) and torch.equal(index.sort().values, torch.arange(len(x1))):
        return index.to(x0.device)                                          # a permutation
    return torch.multinomial(plan / plan.sum(1, keepdim=True), 1, generator=generator).squeeze(1).to(x0.device)


# -- the loss --------------------------------------------------------------------------------------
def cfm_loss(velocity: Velocity, path: Schedule, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The conditional flow matching loss of given pairs and times (Lipman et al. 2023, eq. 23):

        mean over cells and features of (v(x_t, t) - u_t)^2,  x_t = alpha_t x0 + sigma_t x1,
        u_t = alpha'_t x0 + sigma'_t x1  (= x1 - x0 on the linear path).

    x0, x1: (B, d), t: (B,) -> scalar. ``velocity`` takes (x_t, t).
    """
    draw = path.sample(x0, t, noise=x1)
    return (velocity(draw.x_t, t) - draw.velocity).pow(2).mean()


# -- the model -------------------------------------------------------------------------------------
class FlowMatching(nn.Module):
    """A velocity network v_theta(x, t, c) trained by conditional flow matching on ``path``.

    network: maps (x: (B, d), t: (B,), codes: (B, n_keys) or None) -> (B, d), e.g. ``nn.ConditionalMLP``.
    path: how the two ends mix (default the straight ``LinearPath`` of rectified flow / OT-CFM).
    coupling: "independent", "ot" or "given" (module docstring).
    condition_keys: batch entries (long (B,) codes) the network is conditioned on, in this order.
    source_key: the batch entry holding the t = 1 end (cells, (B', d)); None means Gaussian noise. With
        coupling "given" the t = 1 end is ``batch[source_key or "x1"]``, row i paired with ``batch["x"][i]``.

    Batches: ``{"x": (B, d) data at t = 0, <condition keys>: (B,) long, [source_key or "x1"]: (B', d)}``.
    """

    def __init__(self, network: nn.Module, path: Schedule | None = None, coupling: str = "independent",
                 condition_keys: Sequence[str] = (), source_key: str | None = None, p_uncond: float = 0.0):
        super().__init__()
        if coupling not in COUPLINGS:
            raise ValueError(f"Unknown coupling {coupling!r}; use one of {COUPLINGS}.")
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond is a probability, got {p_uncond}.")
        if p_uncond > 0 and not condition_keys:
            raise ValueError("p_uncond > 0 drops conditions, but the model has none; give condition_keys.")
        self.p_uncond = p_uncond
        self.network = network
        self.path = path if path is not None else LinearPath()
        self.coupling = coupling
        self.condition_keys = tuple(condition_keys)
        self.source_key = source_key

    # -- training ------------------------------------------------------------------------------------
    def conditions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The condition codes of a batch, (B, n_keys) long, or None for an unconditional model."""
        return batch_codes(batch, self.condition_keys)

    def pair(self, batch: dict[str, torch.Tensor],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The two ends of each training pair: (x0: (B, d) the batch's data, x1: (B, d) their partners).

        x0 keeps the batch's order (so the condition codes stay with their cells); x1 is fresh noise, or the
        source cells reordered (and, for unequal sizes, resampled) by the coupling.
        """
        x0 = batch["x"]
        if self.coupling == "given":
            key = self.source_key or PAIRED_KEY
            if key not in batch:
                raise ValueError(f"coupling='given' reads the t = 1 end of each pair from batch[{key!r}], which this "
                                 f"batch lacks (it has {sorted(batch)}). Pass batches {{'x': x0, {key!r}: x1}}, "
                                 "e.g. from FlowMatching.reflow_pairs.")
            x1 = batch[key]
            if x1.shape != x0.shape:
                raise ValueError(f"Given pairs need x0 and x1 of one shape, got {tuple(x0.shape)} and "
                                 f"{tuple(x1.shape)}.")
            return x0, x1
        x1 = self.source(batch, generator)
        if self.coupling == "ot":
            return x0, x1[ot_pairing(x0, x1, generator)]
        if len(x1) != len(x0):                       # independent: n0 source cells drawn uniformly
            return x0, x1[torch.randint(len(x1), (len(x0),), generator=generator).to(x1.device)]
        return x0, x1

    def source(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """The t = 1 end before pairing: ``batch[source_key]``, or N(0, I) noise like ``batch["x"]``."""
        x = batch["x"]
        if self.source_key is None:
            if generator is None:
                return torch.randn_like(x)
            return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        if self.source_key not in batch:
            raise ValueError(f"source_key={self.source_key!r}, but the batch has no such entry (it has "
                             f"{sorted(batch)}); add the source cells to each batch.")
        source = batch[self.source_key]
        if source.dim() != 2 or source.shape[1] != x.shape[1]:
            raise ValueError(f"batch[{self.source_key!r}] must be (cells, {x.shape[1]}), got {tuple(source.shape)}.")
        return source

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """The CFM loss of one batch, t ~ U(0, 1) (Lipman et al. 2023, eq. 23; Tong et al. 2024, Alg. 1
        with the "ot" coupling). ``step`` is unused (no schedule)."""
        x0, x1 = self.pair(batch)
        codes = self.conditions(batch)
        if codes is not None and self.training:
            codes = drop_conditions(codes, self.p_uncond)                  # classifier-free guidance's dropout
        t = torch.rand(len(x0), device=x0.device)
        mse = cfm_loss(lambda x, s: self.network(x, s, codes), self.path, x0, x1, t)
        return LossOutput(loss=mse, terms={"mse": mse.detach()})

    # -- sampling ------------------------------------------------------------------------------------
    def velocity(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None,
                 guidance_scale: float | None = None) -> torch.Tensor:
        """v_theta(x, t, c): x (B, d), t (B,) or a scalar -> (B, d), d x_t / dt in the package's time; with
        guidance_scale w, v_uncond + w (v_cond - v_uncond) (classifier-free guidance of the velocity)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.reshape(-1).expand(len(x)) if t.numel() == 1 else t
        return guided(lambda c: self.network(x, t, c), codes, guidance_scale)

    @torch.no_grad()
    def sample(self, n: int, nfe: int = 20, method: str = "euler", codes: torch.Tensor | None = None,
               generator: torch.Generator | None = None, x1: torch.Tensor | None = None,
               guidance_scale: float | None = None) -> torch.Tensor:
        """n points at t = 0, integrated from t = 1 (N(0, I) noise, or the given ``x1``: (n, d)) with
        ``samplers.ode_solve`` ("euler": nfe steps; "heun": nfe // 2 steps; "dopri5": adaptive, nfe ignored).
        codes: (n, n_keys) long or None; guidance_scale: classifier-free guidance (needs p_uncond > 0 in training).
        Returns (n, d), in eval mode (the training mode is restored after).
        """
        from .. import samplers

        x1 = self._start(n, x1, generator)
        codes = self._codes(codes, n)
        was_training = self.training
        self.eval()
        try:
            return samplers.ode_solve(lambda x, t: self.velocity(x, t, codes, guidance_scale), x1, nfe, method=method)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def reflow_pairs(self, n: int, nfe: int = 20, method: str = "euler", codes: torch.Tensor | None = None,
                     generator: torch.Generator | None = None,
                     x1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The couplings of rectified flow's reflow (Liu et al. 2023, Alg. 1): (x0_generated, x1_noise), each
        (n, d), with x0_generated[i] the model's image of x1_noise[i]. Train a new ``FlowMatching(...,
        coupling="given")`` on batches ``{"x": x0_generated, "x1": x1_noise}`` (plus the codes under their
        condition keys) to straighten the flow."""
        x1 = self._start(n, x1, generator)
        return self.sample(n, nfe, method, codes=codes, x1=x1), x1

    def _start(self, n: int, x1: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        """The t = 1 points sampling starts from: the given x1 (n, d), or N(0, I) noise (n, d)."""
        device = module_device(self)
        if x1 is not None:
            if x1.dim() != 2 or len(x1) != n:
                raise ValueError(f"x1 must be (n={n}, d), got {tuple(x1.shape)}.")
            return x1.to(device)
        if self.source_key is not None:
            raise ValueError(f"This model starts from the cells in batch[{self.source_key!r}], not from noise: pass "
                             "them as x1=(n, d) source cells.")
        d = getattr(self.network, "n_in", None)
        if d is None:
            raise ValueError("The network does not say its input size (no .n_in); pass the starting points x1=(n, d).")
        return torch.randn(n, d, generator=generator).to(device)

    def _codes(self, codes: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if codes is None:
            if self.condition_keys:
                raise ValueError(f"This model is conditioned on {list(self.condition_keys)}: pass codes=(n, "
                                 f"{len(self.condition_keys)}) long (-1 for 'unconditional' where trained so).")
            return None
        codes = torch.as_tensor(codes, device=module_device(self)).long()       # e.g. pandas' int8 category codes
        if codes.dim() != 2 or len(codes) != n:
            raise ValueError(f"codes must be (n={n}, n_keys) long, got {tuple(codes.shape)}.")
        return codes


# -- how straight a flow is ------------------------------------------------------------------------
@torch.no_grad()
def straightness(velocity: Velocity, x1: torch.Tensor, nfe: int = 100) -> float:
    """Liu et al. 2023's straightness S = int_0^1 E ||(x1 - x0) - v(x_t, t)||^2 dt along the flow's own
    trajectories from x1 (t = 1) to x0 (t = 0), 0 exactly when every trajectory is a straight line
    travelled at constant speed. In our time, a straight path x_t = (1 - t) x0 + t x1 has dx/dt = x1 - x0.

    Euler with ``nfe`` uniform steps; the integral is the mean over the steps' velocities, the expectation
    the mean over the rows of x1: (n, d). ``velocity`` takes (x: (n, d), t: (n,)).
    """
    if nfe < 1:
        raise ValueError(f"The number of function evaluations must be >= 1, got nfe={nfe}.")
    times = torch.linspace(1.0, 0.0, nfe + 1, dtype=x1.dtype, device=x1.device)
    x, velocities = x1, []
    for t, s in zip(times[:-1], times[1:]):
        v = velocity(x, t.expand(len(x)))                                   # (n, d)
        velocities.append(v)
        x = x + (s - t) * v
    chord = x1 - x                                                          # x1 - x0 of each trajectory
    return float(torch.stack([(chord - v).pow(2).sum(-1) for v in velocities]).mean())
