"""Denoising diffusion (Ho et al. 2020) in continuous time (Song et al. 2021), with classifier-free guidance.

A network f_theta(x_t, t, c) is trained to predict one of three equivalent targets from
x_t = alpha_t x_0 + sigma_t eps (``genailab_core.schedules``; t = 0 data, t = 1 noise):

- ``"eps"``: the noise eps (Ho et al. 2020, eq. 14, the "simple" loss);
- ``"x0"``: the clean point x_0 (Kingma et al. 2021's denoiser);
- ``"v"``: v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, section 4; variance-preserving schedules only).

Whatever it predicts, the model answers in all four languages: eps_hat, x0_hat, the score
-eps_hat / sigma_t (Song et al. 2021, eq. 7's denoising score) and the probability-flow velocity.
With ``condition_keys`` and ``p_uncond`` > 0 the same network also learns the unconditional model
(its codes replaced by the null code -1), so that sampling can mix the two with a guidance scale
(classifier-free guidance, Ho & Salimans 2022). Samplers live in ``genailab_core.samplers``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..nn import NULL_CONDITION
from ..schedules import Schedule
from .base import LossOutput
from .tensors import batch_codes, batch_times, column, drop_conditions, feature_count, guided, module_device

PREDICTIONS = ("eps", "x0", "v")
SAMPLERS = ("ddim", "ancestral", "sde", "pc", "ode")


def largest_time(schedule: Schedule) -> float:
    """The last time a model trains and starts sampling at: 1, or 1 - 1e-3 where alpha_1 = 0 (VPCosine),
    where x_0 = (x_t - sigma eps) / alpha and the forward drift alpha'/alpha are undefined."""
    return 1.0 if float(schedule.alpha(torch.tensor(1.0))) > 1e-4 else 1.0 - 1e-3


def is_variance_preserving(schedule: Schedule) -> bool:
    """alpha_t^2 + sigma_t^2 = 1 on a grid of times."""
    t = torch.linspace(0.0, largest_time(schedule), 11)
    return bool(((schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2 - 1).abs() < 1e-4).all())


class Diffusion(nn.Module):
    """A Gaussian diffusion model over (batch, d) vectors (Ho et al. 2020; Song et al. 2021).

    network: ``(x: (B, d), t: (B,), codes: (B, n_keys) or None) -> (B, d)``, e.g. ``nn.ConditionalMLP``.
    schedule: any ``Schedule``; ``prediction="v"`` needs a variance-preserving one (VPLinear, VPCosine).
    condition_keys: batch entries holding long condition codes, stacked into codes (B, n_keys).
    p_uncond: in training mode, the probability per cell and step that all its codes become the null code -1
        (Ho & Salimans 2022, Alg. 1), so the network also learns the unconditional model.
    t_min: training times are t ~ U(t_min, t_max), t_max = 1 (1 - 1e-3 where alpha_1 = 0); sigma_{t_min} > 0
        keeps the score -eps / sigma finite.
    """

    def __init__(self, network: nn.Module, schedule: Schedule, prediction: str = "eps",
                 condition_keys: Sequence[str] = (), p_uncond: float = 0.0, t_min: float = 1e-3):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}.")
        if prediction == "v" and not is_variance_preserving(schedule):
            raise ValueError(f"The v-prediction v = alpha eps - sigma x0 assumes alpha^2 + sigma^2 = 1; "
                             f"{type(schedule).__name__} is not variance-preserving. Use VPLinear or VPCosine, "
                             "or prediction='eps' / 'x0'.")
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond is a probability, got {p_uncond}.")
        if p_uncond > 0 and not condition_keys:
            raise ValueError("p_uncond > 0 drops conditions, but the model has none; give condition_keys.")
        if not 0.0 < t_min < largest_time(schedule):
            raise ValueError(f"t_min must lie in (0, {largest_time(schedule)}), got {t_min}.")
        self.network, self.schedule, self.prediction = network, schedule, prediction
        self.condition_keys, self.p_uncond = list(condition_keys), p_uncond
        self.t_min, self.t_max = t_min, largest_time(schedule)

    # -- training -------------------------------------------------------------------------------
    def drop_conditions(self, codes: torch.Tensor) -> torch.Tensor:
        """Replace all codes of each cell by the null code with probability p_uncond (Ho & Salimans 2022,
        Alg. 1). codes: (B, n_keys) -> (B, n_keys)."""
        return drop_conditions(codes, self.p_uncond)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses: eps, x_0, or v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, eq. 16
        with alpha^2 + sigma^2 = 1). x0, noise: (B, d), t: (B,) -> (B, d)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        return column(self.schedule.alpha(t)) * noise - column(self.schedule.sigma(t)) * x0

    def loss(self, batch: dict[str, torch.Tensor], step: int | None = None) -> LossOutput:
        """|| f_theta(x_t, t, c) - target ||^2, t ~ U(t_min, t_max), mean over genes and cells (Ho et al. 2020,
        eq. 14 for eps). In training mode the codes are dropped with probability p_uncond."""
        x0 = batch["x"]
        codes = batch_codes(batch, self.condition_keys)
        if codes is not None and self.training:
            codes = self.drop_conditions(codes)
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(x0.shape[0], device=x0.device)      # (B,)
        path = self.schedule.sample(x0, t)
        mse = ((self.network(path.x_t, t, codes) - self.target(x0, path.noise, t)) ** 2).mean()
        return LossOutput(loss=mse, terms={"mse": mse.detach()})

    # -- the four views of one prediction ---------------------------------------------------------
    def _null_codes(self, x: torch.Tensor) -> torch.Tensor | None:
        """Codes meaning "no condition": (B, n_keys) of -1, or None for an unconditional model."""
        if not self.condition_keys:
            return None
        return torch.full((x.shape[0], len(self.condition_keys)), NULL_CONDITION, dtype=torch.long, device=x.device)

    def output(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
               guidance_scale: float | None = None) -> torch.Tensor:
        """The network's prediction (in the model's parameterization), guided:

            f_w = f_uncond + w (f_cond - f_uncond)   (Ho & Salimans 2022, eq. 6, with their w + 1 as our w),

        so w = 1 is the conditional and w = 0 the unconditional model (exactly, by torch.lerp). The mix is
        affine, so guiding eps, x0 or v gives the same guided eps. guidance_scale None: the conditional
        output, or the unconditional one when codes is None. x: (B, d), t: float or (B,) -> (B, d).
        """
        if codes is not None and not self.condition_keys:
            raise ValueError("This model has no condition_keys, so it takes no codes; pass codes=None.")
        t = batch_times(t, x)
        if guidance_scale is None:
            codes = self._null_codes(x) if codes is None else codes
        codes = None if codes is None else torch.as_tensor(codes, device=x.device).long()
        return guided(lambda c: self.network(x, t, c), codes, guidance_scale)

    def eps_and_x0(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
                   guidance_scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat), each (B, d), from whichever target the network predicts, by
        x_t = alpha x0 + sigma eps and, for v (alpha^2 + sigma^2 = 1), eps = sigma x_t + alpha v,
        x0 = alpha x_t - sigma v (Salimans & Ho 2022, section 4)."""
        out = self.output(x, t, codes, guidance_scale)
        t = batch_times(t, x)
        alpha, sigma = column(self.schedule.alpha(t)), column(self.schedule.sigma(t))
        if self.prediction == "eps":
            return out, (x - sigma * out) / alpha
        if self.prediction == "x0":
            return (x - alpha * out) / sigma, out
        return sigma * x + alpha * out, alpha * x - sigma * out

    def eps(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
            guidance_scale: float | None = None) -> torch.Tensor:
        """The predicted noise eps_hat(x_t, t): (B, d)."""
        return self.eps_and_x0(x, t, codes, guidance_scale)[0]

    def x0(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
           guidance_scale: float | None = None) -> torch.Tensor:
        """The predicted clean point E[x_0 | x_t] (Tweedie's formula for the exact eps): (B, d)."""
        return self.eps_and_x0(x, t, codes, guidance_scale)[1]

    def score(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
              guidance_scale: float | None = None) -> torch.Tensor:
        """grad_x log p_t(x) = -eps_hat / sigma_t (Song et al. 2021, eq. 7 with q(x_t | x_0) Gaussian): (B, d)."""
        return -self.eps(x, t, codes, guidance_scale) / column(self.schedule.sigma(batch_times(t, x)))

    def velocity(self, x: torch.Tensor, t, codes: torch.Tensor | None = None,
                 guidance_scale: float | None = None) -> torch.Tensor:
        """The probability-flow ODE velocity dx/dt = f(x, t) - 1/2 g(t)^2 score (Song et al. 2021, eq. 13),
        which for a Gaussian path equals alpha'_t x0_hat + sigma'_t eps_hat (Kingma et al. 2021, app. A): (B, d)."""
        eps, x0 = self.eps_and_x0(x, t, codes, guidance_scale)
        t = batch_times(t, x)
        return column(self.schedule.d_alpha(t)) * x0 + column(self.schedule.d_sigma(t)) * eps

    # -- generation and likelihood ----------------------------------------------------------------
    def _sample_codes(self, codes, n: int, device) -> torch.Tensor | None:
        """codes for sampling: an int (one key), (n_keys,) for every sample, or (n, n_keys) -> (n, n_keys)."""
        if codes is None:
            return None
        codes = torch.as_tensor(codes, dtype=torch.long, device=device)
        if codes.dim() <= 1:
            codes = codes.reshape(1, -1).expand(n, -1)
        if codes.shape != (n, len(self.condition_keys)):
            k = len(self.condition_keys)
            raise ValueError(f"codes must be an int, ({k},) or ({n}, {k}) for condition keys {self.condition_keys}; "
                             f"got shape {tuple(codes.shape)}.")
        return codes

    @torch.no_grad()
    def sample(self, n: int, sampler: str = "ddim", nfe: int = 50, eta: float = 0.0, codes=None,
               guidance_scale: float | None = None, generator: torch.Generator | None = None,
               method: str = "euler", rtol: float = 1e-5, atol: float = 1e-5) -> torch.Tensor:
        """n new points (n, d), from x_{t_max} ~ N(0, sigma_{t_max}^2 I) back to t = 0.

        sampler: "ddim" (Song et al. 2021a; ``eta`` = 1 is DDPM), "ancestral" (DDPM, Ho et al. 2020), "sde"
        (Euler-Maruyama of the reverse SDE), "pc" (predictor-corrector), "ode" (the probability flow with
        ``method`` "euler", "heun" or an adaptive torchdiffeq one, with tolerances ``rtol``, ``atol``;
        float32 states rarely allow much below 1e-5). The SDE, PC and ODE samplers stop at t_min
        and return the denoised x0_hat there (Song et al. 2021, app. G's final denoising step).
        codes: one condition for all (an int or (n_keys,)) or one per sample (n, n_keys).
        """
        from .. import samplers

        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
        self.eval()
        device = module_device(self)
        codes = self._sample_codes(codes, n, device)
        sigma_max = float(self.schedule.sigma(torch.tensor(self.t_max)))
        x = sigma_max * torch.randn(n, feature_count(self.network), device=device, generator=generator)

        def eps(x, t):
            return self.eps(x, t, codes, guidance_scale)

        def score(x, t):
            return self.score(x, t, codes, guidance_scale)

        if sampler in ("ddim", "ancestral"):
            return samplers.ddim(eps, self.schedule, x, nfe, eta=1.0 if sampler == "ancestral" else eta,
                                 t_start=self.t_max, t_end=0.0, generator=generator)
        if sampler == "sde":
            x = samplers.reverse_sde(score, self.schedule, x, nfe, t_start=self.t_max, t_end=self.t_min,
                                     generator=generator)
        elif sampler == "pc":
            x = samplers.predictor_corrector(score, self.schedule, x, nfe, t_start=self.t_max, t_end=self.t_min,
                                             generator=generator)
        else:
            x = samplers.ode_solve(lambda x, t: self.velocity(x, t, codes, guidance_scale), x, nfe, method=method,
                                   t_start=self.t_max, t_end=self.t_min, rtol=rtol, atol=atol)
        return self.x0(x, self.t_min, codes, guidance_scale)

    def log_likelihood(self, x: torch.Tensor, codes=None, divergence: str = "exact", n_probes: int = 1,
                       method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x) in nats through the probability-flow ODE (Song et al. 2021, eq. 39; Chen et al. 2018):
        log p_0(x) = log p_T(x_T) + int_0^T div v(x_t, t) dt. x: (B, d) -> (B,).

        The integral runs from t_min (x is taken as x_{t_min}, its sigma_{t_min} of noise ignored) to t_max.
        The prior is N(0, sigma_{t_max}^2 I): the alpha_{t_max}^2 * data variance that the true x_{t_max} also
        carries is ignored (alpha_1 ~ 0.007 for VPLinear; for VE schedules x_0's spread must be << sigma_max).
        ``divergence``: "exact" (d backward passes) or "hutchinson" with ``n_probes`` random probes.
        """
        from .. import samplers

        self.eval()
        codes = self._sample_codes(codes, x.shape[0], x.device)
        t0, t1 = self.t_min, self.t_max
        sigma_max = self.schedule.sigma(torch.tensor(t1, dtype=x.dtype, device=x.device))

        def velocity(x, s):
            """The PF-ODE on s in [0, 1], t = t0 + s (t1 - t0): dx/ds = v(x, t) dt/ds."""
            return (t1 - t0) * self.velocity(x, t0 + (t1 - t0) * batch_times(s, x), codes)

        def prior_log_prob(z):
            return torch.distributions.Normal(0.0, sigma_max).log_prob(z).sum(-1)

        log_p, _ = samplers.pf_ode_log_likelihood(velocity, x, prior_log_prob, t_end=1.0, divergence=divergence,
                                                  n_probes=n_probes, method=method, rtol=rtol, atol=atol,
                                                  generator=generator)
        return log_p
