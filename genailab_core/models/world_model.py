"""A world model of cell-state dynamics: the recurrent state-space model (RSSM) of PlaNet (Hafner et al. 2019),
trained with the KL balancing and free nats of DreamerV3 (Hafner et al. 2023). Chapter 15.

Latent dynamics z_{t+1} = f(z_t, a_t), split as PlaNet does into a deterministic and a stochastic path:

    h_t = GRU(h_{t-1}, [z_{t-1}, emb(a_{t-1})])      deterministic recurrent state, h_0 = 0   (PlaNet eq. 5)
    p(z_t | h_t)      = N(m_p(h_t), s_p(h_t)^2)       prior: the learned dynamics, used to imagine
    q(z_t | h_t, x_t) = N(m_q(h_t, e(x_t)), s_q^2)    posterior: the filter that reads the observation
    p(x_t | h_t, z_t)                                 decoder: Gaussian (PCs) or NB with library l_t (counts)

DreamerV3 uses 32 categorical latents of 32 classes. Expression states are continuous, so z is a diagonal
Gaussian here, as in PlaNet and DreamerV1, with s = softplus(.) + min_std (Hafner et al. 2019, appendix A).

Actions a_t are discrete labels (a time step "day 2 -> 4", a perturbation id), embedded by ``nn.Embedding``.
The model counts the actions it was trained on and refuses to imagine one it never saw: its embedding would be
an untrained random vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Normal

from ..distributions import NegativeBinomial, bounded_theta
from ..nn import MLP
from .base import LossOutput
from .tensors import increasing_times

LIKELIHOODS = ("gaussian", "nb")

__all__ = ["LIKELIHOODS", "RSSM", "LatentStates", "balanced_kl", "check_time_labels", "gaussian_kl",
           "time_step_actions"]


# -- the KL terms of DreamerV3 ------------------------------------------------------------------------------
def gaussian_kl(q: Normal, p: Normal) -> torch.Tensor:
    """KL[q || p] of diagonal Gaussians in closed form, summed over the last (latent) axis: (..., d) -> (...).

        KL = sum_d log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2
    """
    var_ratio = (q.scale / p.scale) ** 2
    mean_term = ((q.loc - p.loc) / p.scale) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio)).sum(-1)


def balanced_kl(q: Normal, p: Normal, free_nats: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV3's two KL losses (Hafner et al. 2023, eq. 5), each per time step on the sum over latent dims:

        L_dyn = max(free, KL[sg(q) || p])    trains the prior toward the posterior (no gradient to q)
        L_rep = max(free, KL[q || sg(p)])    trains the posterior toward the prior (no gradient to p)

    Below ``free_nats`` a term is constant, so it stops pulling (free nats). q, p: Normal over (..., d) -> (...).
    """
    stopped_q, stopped_p = Normal(q.loc.detach(), q.scale.detach()), Normal(p.loc.detach(), p.scale.detach())
    dynamics = torch.clamp(gaussian_kl(stopped_q, p), min=free_nats)
    representation = torch.clamp(gaussian_kl(q, stopped_p), min=free_nats)
    return dynamics, representation


# -- time labels and actions --------------------------------------------------------------------------------
def check_time_labels(times, length: int | None = None) -> torch.Tensor:
    """times: (L,) strictly increasing time labels (days, pseudotime bins); returns them as a float tensor."""
    return increasing_times(times, length, "A world model steps forward in time")


def time_step_actions(times, steps: Sequence[tuple[float, float]]) -> torch.Tensor:
    """The action id of each step t_k -> t_{k+1}: its index in ``steps``, a list of (from, to) pairs.

    times: (L,) strictly increasing -> (L - 1,) long. E.g. steps [(0, 2), (2, 4), (4, 7)] and times
    [0, 2, 4] give [0, 1]. A step not in ``steps`` is an error naming it and the known steps.
    """
    times = check_time_labels(times)
    known = {(float(a), float(b)): i for i, (a, b) in enumerate(steps)}
    pairs = [(float(a), float(b)) for a, b in zip(times[:-1].tolist(), times[1:].tolist())]
    unknown = [pair for pair in pairs if pair not in known]
    if unknown:
        raise ValueError(f"Time step(s) {unknown} are not among the model's steps {list(known)}: a world model can "
                         "only take the steps it was built with. Build it with steps that include them.")
    return torch.tensor([known[pair] for pair in pairs], dtype=torch.long)


@dataclass
class LatentStates:
    """A latent trajectory of L steps: h (batch, L, n_deterministic), z (batch, L, n_latent), the prior
    p(z_t | h_t) (loc, scale: (batch, L, n_latent)) and, from ``observe``, the posterior q(z_t | h_t, x_t)."""

    h: torch.Tensor
    z: torch.Tensor
    prior: Normal
    posterior: Normal | None = None

    def last(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) at the last step: (batch, n_deterministic), (batch, n_latent); the start of a rollout."""
        return self.h[:, -1], self.z[:, -1]


def _normal(params: torch.Tensor, min_std: float) -> Normal:
    """(..., 2d) -> N(loc, softplus(raw) + min_std) over (..., d) (PlaNet / DreamerV1's std)."""
    loc, raw = params.chunk(2, dim=-1)
    return Normal(loc, F.softplus(raw) + min_std)


class RSSM(nn.Module):
    """Recurrent state-space world model for sequences x: (batch, L, n_obs) under actions (batch, L - 1).

    likelihood: "gaussian" (continuous inputs such as PCs; a learned per-feature scale) or "nb" (raw counts;
    mean l_t * softmax(.), per-gene inverse dispersion, the package's NB log-likelihood, as in the VAE).
    n_actions: number of discrete actions; or ``steps``: (from, to) time pairs whose index is the action, so
    that batches may carry time labels (``batch["times"]``: (L,)) instead of actions.
    Loss weights as DreamerV3: beta_dyn = 0.5, beta_rep = 0.1, free_nats = 1 (``balanced_kl``).
    """

    def __init__(self, n_obs: int, n_actions: int | None = None, n_latent: int = 8, n_deterministic: int = 64,
                 n_hidden: int = 128, action_dim: int = 8, likelihood: str = "gaussian",
                 steps: Sequence[tuple[float, float]] | None = None, action_names: Sequence[str] | None = None,
                 beta_dyn: float = 0.5, beta_rep: float = 0.1, free_nats: float = 1.0, min_std: float = 0.1):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        if steps is not None:
            steps = [(float(a), float(b)) for a, b in steps]
            if n_actions not in (None, len(steps)):
                raise ValueError(f"steps defines {len(steps)} actions but n_actions={n_actions}; give one of them.")
            n_actions = len(steps)
            action_names = action_names or [f"{a:g} -> {b:g}" for a, b in steps]
        if n_actions is None or n_actions < 1:
            raise ValueError(f"A world model needs at least one action: give n_actions >= 1 or steps, got {n_actions}.")
        if action_names is not None and len(action_names) != n_actions:
            raise ValueError(f"action_names has {len(action_names)} names for {n_actions} actions.")
        if min(beta_dyn, beta_rep, free_nats) < 0 or min_std <= 0:
            raise ValueError("beta_dyn, beta_rep and free_nats must be >= 0 and min_std > 0.")
        self.n_obs, self.n_actions, self.n_latent, self.n_deterministic = n_obs, n_actions, n_latent, n_deterministic
        self.likelihood, self.steps = likelihood, steps
        self.action_names = list(action_names) if action_names is not None else None
        self.beta_dyn, self.beta_rep, self.free_nats, self.min_std = beta_dyn, beta_rep, free_nats, min_std

        def mlp(n_in, n_out):
            return MLP(n_in, n_out, n_hidden, 1, norm="layer", activation=nn.SiLU)

        self.action_embedding = nn.Embedding(n_actions, action_dim)
        self.cell = nn.GRUCell(n_latent + action_dim, n_deterministic)
        self.prior_net = mlp(n_deterministic, 2 * n_latent)                     # h_t -> p(z_t | h_t)
        self.obs_encoder = mlp(n_obs, n_hidden)                                 # x_t -> e(x_t)
        self.posterior_net = mlp(n_deterministic + n_hidden, 2 * n_latent)      # [h_t, e_t] -> q(z_t | h_t, x_t)
        self.decoder = mlp(n_deterministic + n_latent, n_obs)                   # [h_t, z_t] -> mean or rho logits
        per_feature = "log_scale" if likelihood == "gaussian" else "log_theta"
        setattr(self, per_feature, nn.Parameter(torch.zeros(n_obs)))
        self.register_buffer("action_counts", torch.zeros(n_actions, dtype=torch.long))   # seen in training

    # -- the four distributions ---------------------------------------------------------------------------
    def prior(self, h: torch.Tensor) -> Normal:
        """p(z_t | h_t): h (..., n_deterministic) -> Normal over (..., n_latent)."""
        return _normal(self.prior_net(h), self.min_std)

    def posterior(self, h: torch.Tensor, embedded_x: torch.Tensor) -> Normal:
        """q(z_t | h_t, x_t): h (..., n_deterministic), embedded_x = ``embed_obs(x)`` (..., n_hidden)."""
        return _normal(self.posterior_net(torch.cat([h, embedded_x], -1)), self.min_std)

    def embed_obs(self, x: torch.Tensor) -> torch.Tensor:
        """e(x): the encoder reads x (gaussian) or log1p(x) (counts, as the VAE). (..., n_obs) -> (..., n_hidden)."""
        return self.obs_encoder(x if self.likelihood == "gaussian" else torch.log1p(x))

    def decode(self, h: torch.Tensor, z: torch.Tensor, library: torch.Tensor | None = None) -> Distribution:
        """p(x_t | h_t, z_t): h (..., n_deterministic), z (..., n_latent) -> over (..., n_obs).

        NB: mean l * rho(h, z) with library l broadcastable to (..., 1) (scVI's library offset)."""
        out = self.decoder(torch.cat([h, z], -1))
        if self.likelihood == "gaussian":
            return Normal(out, self.log_scale.exp())
        if library is None:
            raise ValueError("An NB world model decodes counts at a library size: pass library (..., 1), e.g. the "
                             "observed totals x.sum(-1, keepdim=True) or a typical library of the target time.")
        mu = (library * torch.softmax(out, -1)).clamp_min(1e-8)
        theta = bounded_theta(self.log_theta)
        return NegativeBinomial(mu, theta, validate_args=False)

    def transition(self, h: torch.Tensor, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """h_t = GRU(h_{t-1}, [z_{t-1}, emb(a_{t-1})]).
        h: (batch, n_deterministic), z: (batch, n_latent), actions: (batch,) -> (batch, n_deterministic)."""
        return self.cell(torch.cat([z, self.action_embedding(actions)], -1), h)

    # -- checks -------------------------------------------------------------------------------------------
    def check_actions(self, actions: torch.Tensor, shape: tuple[int, int], require_seen: bool = False) -> torch.Tensor:
        """actions: (batch, steps) long ids in 0..n_actions-1; with ``require_seen``, only actions seen in training."""
        actions = torch.as_tensor(actions)
        if actions.dtype.is_floating_point or tuple(actions.shape) != tuple(shape):
            raise ValueError(f"Expected integer actions of shape {tuple(shape)} (batch, steps), got "
                             f"{actions.dtype} {tuple(actions.shape)}.")
        outside = (actions < 0) | (actions >= self.n_actions)
        if bool(outside.any()):
            raise ValueError(f"Unknown action id(s) {sorted(set(actions[outside].tolist()))}: this world model was "
                             f"built with {self.n_actions} actions, valid ids 0..{self.n_actions - 1}{self._names()}.")
        ids = sorted(set(actions.flatten().tolist())) if require_seen else []
        unseen = [a for a in ids if int(self.action_counts[a]) == 0]
        if unseen:
            seen = self.action_counts.nonzero().flatten().tolist()
            raise ValueError(f"The world model never saw action(s) {unseen}{self._names(unseen)} in training (seen: "
                             f"{seen}); their embedding is untrained, so a rollout under them would be arbitrary. "
                             "Train on sequences that contain them, or pass allow_unseen=True to imagine anyway.")
        return actions.long()

    def _names(self, ids: Sequence[int] | None = None) -> str:
        if self.action_names is None:
            return ""
        ids = range(self.n_actions) if ids is None else ids
        return " (" + ", ".join(f"{i}: {self.action_names[i]!r}" for i in ids) + ")"

    def _check_x(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.n_obs:
            raise ValueError(f"Expected sequences x of shape (batch, L, {self.n_obs}), got {tuple(x.shape)}.")

    def batch_actions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actions of a batch: ``batch["actions"]`` (batch, L - 1), or the steps of ``batch["times"]`` (L,)."""
        x = batch["x"]
        if "actions" in batch:
            return batch["actions"]
        if "times" not in batch:
            raise KeyError("A world-model batch needs 'actions' (batch, L - 1) or 'times' (L,) beside 'x'.")
        if self.steps is None:
            raise ValueError("This world model was built without steps, so it cannot read time labels: build it "
                             "with steps=[(t0, t1), ...] or give batch['actions'].")
        actions = time_step_actions(batch["times"].cpu(), self.steps).to(x.device)
        return actions.expand(x.shape[0], -1)

    # -- filtering, imagining, forecasting -------------------------------------------------------------
    def observe(self, x: torch.Tensor, actions: torch.Tensor, sample: bool = True) -> LatentStates:
        """Filter a sequence with the posterior. x: (batch, L, n_obs), actions: (batch, L - 1).

        z_t ~ q(z_t | h_t, x_t) (reparameterized; its mean with ``sample=False``), fed to the next transition."""
        self._check_x(x)
        actions = self.check_actions(actions, (x.shape[0], x.shape[1] - 1))
        embedded = self.embed_obs(x)                                            # (batch, L, n_hidden)
        h = x.new_zeros(x.shape[0], self.n_deterministic)
        z, hs, zs, posteriors = None, [], [], []
        for t in range(x.shape[1]):
            if t > 0:
                h = self.transition(h, z, actions[:, t - 1])
            q = self.posterior(h, embedded[:, t])
            z = q.rsample() if sample else q.loc
            hs.append(h)
            zs.append(z)
            posteriors.append(q)
        h_all = torch.stack(hs, 1)
        posterior = Normal(torch.stack([q.loc for q in posteriors], 1), torch.stack([q.scale for q in posteriors], 1))
        return LatentStates(h_all, torch.stack(zs, 1), self.prior(h_all), posterior)

    def imagine(self, h: torch.Tensor, z: torch.Tensor, actions: torch.Tensor, sample: bool = True,
                allow_unseen: bool = False) -> LatentStates:
        """Roll the latent state forward under the prior alone: h_{k+1} = GRU(h_k, [z_k, emb(a_k)]),
        z_{k+1} ~ p(z | h_{k+1}) (its mean with ``sample=False``).

        h: (batch, n_deterministic), z: (batch, n_latent), actions: (batch, H) -> states of the H imagined steps.
        Actions outside 0..n_actions-1, or never seen in training (unless ``allow_unseen``), are an error."""
        actions = torch.as_tensor(actions)
        steps = actions.shape[-1] if actions.dim() == 2 else -1
        actions = self.check_actions(actions, (h.shape[0], steps), require_seen=not allow_unseen)
        hs, zs, priors = [], [], []
        for k in range(actions.shape[1]):
            h = self.transition(h, z, actions[:, k])
            p = self.prior(h)
            z = p.rsample() if sample else p.loc
            hs.append(h)
            zs.append(z)
            priors.append(p)
        prior = Normal(torch.stack([p.loc for p in priors], 1), torch.stack([p.scale for p in priors], 1))
        return LatentStates(torch.stack(hs, 1), torch.stack(zs, 1), prior)

    @torch.no_grad()
    def forecast(self, x_context: torch.Tensor, actions_context: torch.Tensor, actions_future: torch.Tensor,
                 library: torch.Tensor | None = None, n_samples: int | None = None,
                 allow_unseen: bool = False) -> torch.Tensor:
        """Filter the observed prefix with the posterior, imagine H steps ahead, decode the means.

        x_context: (batch, Lc, n_obs), actions_context: (batch, Lc - 1), actions_future: (batch, H);
        library: counts only, broadcastable to (batch, H, 1). ``n_samples`` None: the mode path (posterior and
        prior means) -> (batch, H, n_obs); k: k stochastic rollouts -> (k, batch, H, n_obs) decoder means.
        """
        if n_samples is None:
            return self._rollout_means(x_context, actions_context, actions_future, library, False, allow_unseen)
        return torch.stack([self._rollout_means(x_context, actions_context, actions_future, library, True,
                                                allow_unseen) for _ in range(n_samples)])

    def _rollout_means(self, x_context, actions_context, actions_future, library, sample: bool,
                       allow_unseen: bool) -> torch.Tensor:
        """One rollout (sampled z, or the means of q and p): decoder means (batch, H, n_obs)."""
        start = self.observe(x_context, actions_context, sample=sample).last()
        future = self.imagine(*start, actions_future, sample=sample, allow_unseen=allow_unseen)
        return self.decode(future.h, future.z, library).mean

    @torch.no_grad()
    def predict_next(self, x: torch.Tensor, actions: torch.Tensor, library: torch.Tensor | None = None) -> torch.Tensor:
        """One-step-ahead predictions E[x_{t+1} | x_{<=t}] along a sequence, on the mode path (means of q and p).

        x: (batch, L, n_obs), actions (batch, L - 1) -> (batch, L - 1, n_obs): entry t predicts x_{t+1} from the
        prior p(z_{t+1} | h_{t+1}) after filtering x_0..x_t. Library (counts): broadcastable to (batch, L - 1, 1)."""
        states = self.observe(x, actions, sample=False)
        return self.decode(states.h[:, 1:], states.prior.loc[:, 1:], library).mean

    # -- training ---------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """DreamerV3's world-model loss, mean over cells (batch x time steps):

            -log p(x_t | h_t, z_t) + beta_dyn L_dyn + beta_rep L_rep,   z_t ~ q(z_t | h_t, x_t)

        batch: "x" (batch, L, n_obs) and "actions" (batch, L - 1) or "times" (L,). Actions of a training
        batch are counted as seen (``action_counts``)."""
        x = batch["x"]
        actions = self.batch_actions(batch)
        states = self.observe(x, actions)
        library = x.sum(-1, keepdim=True) if self.likelihood == "nb" else None
        reconstruction = -self.decode(states.h, states.z, library).log_prob(x).sum(-1)     # (batch, L)
        dynamics, representation = balanced_kl(states.posterior, states.prior, self.free_nats)
        loss = (reconstruction + self.beta_dyn * dynamics + self.beta_rep * representation).mean()
        if self.training:
            self.action_counts += torch.bincount(actions.flatten(), minlength=self.n_actions)
        return LossOutput(loss=loss, terms={
            "reconstruction": reconstruction.mean().detach(), "kl_dynamics": dynamics.mean().detach(),
            "kl_representation": representation.mean().detach(),
            "kl": gaussian_kl(states.posterior, states.prior).mean().detach()})
