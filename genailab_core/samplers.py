"""Samplers: turn a predictor of the noise, the score or the velocity into draws from the data distribution.

A *predictor* is a plain function ``fn(x: (batch, d), t: (batch,)) -> (batch, d)``: a noise prediction
eps_hat(x_t, t), a score s(x_t, t) = grad_x log q_t(x_t) (= -eps / sigma_t), or a velocity v(x_t, t) = d x_t / dt.
Samplers know nothing of networks or losses; they see the predictor and, where they need alpha_t and sigma_t,
a ``schedules.Schedule``. Time follows the package's convention: **t = 0 is the data, t = 1 the noise**, so
sampling runs from t_start = 1 down to t_end near 0 (dt < 0).

    ode_solve              dx/dt = v(x, t): Euler, Heun, or an adaptive torchdiffeq method
    probability_flow       the PF-ODE velocity of a score (Song et al. 2021, eq. 13)
    ddim / ancestral       DDIM (Song, Meng & Ermon 2021, eq. 12 and 16); eta = 1 is DDPM's ancestral sampler
    reverse_sde            Euler-Maruyama of the reverse SDE (Song et al. 2021, eq. 6)
    predictor_corrector    reverse-diffusion predictor + Langevin corrector (Song et al. 2021, Alg. 2-3)
    annealed_langevin      Song & Ermon (2019), Alg. 1
    pf_ode_log_likelihood  exact log-likelihood by the instantaneous change of variables (Chen et al. 2018; FFJORD)

Where alpha_t = 0 (LinearPath, and VPCosine up to rounding, at t = 1), x_t carries no information on x_0: the
forward drift alpha'_t / alpha_t is infinite there and eps-prediction cannot give x0_hat = (x_t - sigma_t eps) /
alpha_t. ``ddim`` handles that first step (see its docstring); ``reverse_sde`` and ``predictor_corrector`` refuse
such a t_start with a ValueError; ``probability_flow``'s velocity is infinite there, so start its ODE below it.

Samplers run under ``torch.no_grad()``; a predictor that needs autograd (the gradient of an energy, classifier
guidance) opens ``torch.enable_grad()`` itself.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchdiffeq import odeint

from .schedules import Schedule

__all__ = ["ADAPTIVE_METHODS", "ancestral", "annealed_langevin", "ddim", "ddim_step", "ode_solve",
           "pf_ode_log_likelihood", "predictor_corrector", "probability_flow", "reverse_sde"]

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")   # torchdiffeq's adaptive solvers
ALPHA_ZERO = 1e-6   # |alpha_t| below this counts as alpha_t = 0 (VPCosine's alpha_1 is cos(pi/2) ~ -4e-8 in float32)


# -- checks and small helpers --------------------------------------------------------------------------------
def _check_nfe(nfe: int, minimum: int = 1, why: str = "") -> None:
    if nfe < minimum:
        raise ValueError(f"The number of function evaluations must be >= {minimum}{why}, got nfe={nfe}.")


def _check_interval(t_start: float, t_end: float) -> None:
    if not 0.0 <= t_end < t_start <= 1.0:
        raise ValueError(f"Sampling runs from the noise down to the data: need 0 <= t_end < t_start <= 1, "
                         f"got t_start={t_start}, t_end={t_end}.")


def _check_alpha_positive(schedule: Schedule, t_start: float, name: str) -> None:
    if float(schedule.alpha(torch.tensor(float(t_start)))) <= ALPHA_ZERO:
        raise ValueError(f"{name}: alpha_t = 0 at t_start={t_start} for {schedule!r}, where the SDE's drift "
                         f"alpha'_t / alpha_t x is infinite; start below it, e.g. t_start=0.999.")


def _grid(t_start: float, t_end: float, n_steps: int, like: torch.Tensor) -> torch.Tensor:
    """n_steps + 1 uniform times from t_start to t_end, in like's dtype and device: (n_steps + 1,)."""
    return torch.linspace(t_start, t_end, n_steps + 1, dtype=like.dtype, device=like.device)


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(batch,) or () -> broadcastable against like: (batch, d)."""
    return v.reshape(-1, *([1] * (like.dim() - 1))) if v.dim() > 0 else v


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


# -- ODEs ------------------------------------------------------------------------------------------------------
def _within(t_start: float, t_end: float, dtype: torch.dtype) -> dict:
    """torchdiffeq options that keep an adaptive solver's evaluations inside [t_start, t_end]: its last step lands
    exactly on t_end, and its first step is given (1% of the interval) instead of probed. Without them the solver
    may evaluate the velocity beyond the interval (e.g. t < 0, where a VP schedule's sigma_t is 0 and the PF-ODE
    velocity NaN), then interpolate back. t_end is rounded to ``dtype`` as the solver's times are, so that landing
    on it ends the solve."""
    return {"step_t": torch.tensor([t_end], dtype=dtype), "first_step": 0.01 * abs(t_end - t_start)}


@torch.no_grad()
def ode_solve(velocity: Predictor, x: torch.Tensor, nfe: int, method: str = "euler", t_start: float = 1.0,
              t_end: float = 0.0, rtol: float = 1e-5, atol: float = 1e-5) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t_start to t_end (either direction); x: (batch, d) -> (batch, d).

    "euler": nfe steps on a uniform grid (first order); "heun": nfe // 2 steps of Heun's method (the explicit
    trapezoidal rule, second order, two evaluations a step; Karras et al. 2022, Alg. 1); an adaptive
    torchdiffeq method (``ADAPTIVE_METHODS``, e.g. "dopri5") with tolerances rtol, atol, nfe then ignored.
    """
    _check_nfe(nfe)
    if t_start == t_end:
        raise ValueError(f"t_start and t_end must differ, both are {t_start}.")
    if method == "euler":
        times = _grid(t_start, t_end, nfe, x)
        for t, s in zip(times[:-1], times[1:]):
            x = x + (s - t) * velocity(x, t.expand(len(x)))                   # x_s = x_t + h v(x_t, t)
        return x
    if method == "heun":
        _check_nfe(nfe, 2, " for 'heun' (two per step)")
        times = _grid(t_start, t_end, nfe // 2, x)
        for t, s in zip(times[:-1], times[1:]):
            v_t = velocity(x, t.expand(len(x)))
            v_s = velocity(x + (s - t) * v_t, s.expand(len(x)))              # slope at the Euler guess
            x = x + (s - t) * 0.5 * (v_t + v_s)                               # trapezoidal rule
        return x
    if method in ADAPTIVE_METHODS:
        times = torch.tensor([t_start, t_end], dtype=x.dtype, device=x.device)
        return odeint(lambda t, y: velocity(y, t.to(y.dtype).expand(len(y))), x, times,
                      method=method, rtol=rtol, atol=atol, options=_within(t_start, t_end, x.dtype))[-1]
    raise ValueError(f"Unknown ODE method {method!r}; use 'euler', 'heun' or one of {ADAPTIVE_METHODS}.")


def probability_flow(score: Predictor, schedule: Schedule) -> Predictor:
    """The velocity of the probability-flow ODE, whose marginals are the path's q_t (Song et al. 2021, eq. 13):

        v(x, t) = f(x, t) - 1/2 g(t)^2 score(x, t),   with (f, g) the forward SDE of ``schedule.sde``.

    Returns fn(x: (batch, d), t: (batch,)) -> (batch, d), for ``ode_solve`` or ``pf_ode_log_likelihood``.
    """
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        f, g = schedule.sde(x, t)
        return f - 0.5 * _rows(g, x) ** 2 * score(x, t)
    return velocity


# -- DDIM and DDPM ancestral sampling ----------------------------------------------------------------------------
def _ddim_update(x0_hat, eps_hat, alpha_t, sigma_t, alpha_s, sigma_s, eta, noise):
    """x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z (Song, Meng & Ermon 2021, eq. 12), with c = eta
    times the s.d. of the DDPM posterior q(x_s | x_t, x_0) (their eq. 16; Kingma et al. 2021, eq. 32-33):

        c^2 = eta^2 sigma_{t|s}^2 sigma_s^2 / sigma_t^2,   sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2.
    """
    posterior_var = sigma_s ** 2 * (1 - (alpha_t * sigma_s) ** 2 / ((alpha_s * sigma_t) ** 2))
    c2 = eta ** 2 * posterior_var.clamp_min(0.0)
    x_s = alpha_s * x0_hat + torch.sqrt((sigma_s ** 2 - c2).clamp_min(0.0)) * eps_hat
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise: a tensor shaped like x_t of N(0, 1) draws.")
        x_s = x_s + torch.sqrt(c2) * noise
    return x_s


def ddim_step(x_t: torch.Tensor, eps_hat: torch.Tensor, alpha_t, sigma_t, alpha_s, sigma_s, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step from time t to an earlier time s (Song, Meng & Ermon 2021, eq. 12, with alpha/sigma):

        x0_hat = (x_t - sigma_t eps_hat) / alpha_t,   x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z.

    x_t, eps_hat, noise (z): (batch, d); alpha_*, sigma_*: floats or tensors broadcastable to x_t; eta in [0, 1]
    (0: deterministic DDIM, 1: DDPM's posterior). For alpha = sqrt(alphabar) it is diffusers' DDIMScheduler.step.
    """
    _check_eta(eta)
    alpha_t, sigma_t, alpha_s, sigma_s = (torch.as_tensor(v, dtype=x_t.dtype, device=x_t.device)
                                          for v in (alpha_t, sigma_t, alpha_s, sigma_s))
    if bool((alpha_t.abs() <= ALPHA_ZERO).any()):
        raise ValueError("ddim_step needs alpha_t > 0 to predict x0 from eps; ddim() handles a start at alpha_t = 0.")
    x0_hat = (x_t - sigma_t * eps_hat) / alpha_t                              # Ho et al. 2020, eq. 15
    return _ddim_update(x0_hat, eps_hat, alpha_t, sigma_t, alpha_s, sigma_s, eta, noise)


def _check_eta(eta: float) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0: DDIM, 1: DDPM ancestral), got eta={eta}.")


@torch.no_grad()
def ddim(eps: Predictor, schedule: Schedule, x: torch.Tensor, nfe: int, eta: float = 0.0, t_start: float = 1.0,
         t_end: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM from x at t_start (batch, d) to t_end over nfe uniform steps, one eps evaluation each -> (batch, d).

    eta = 0 is deterministic (a first-order solver of the PF-ODE); eta = 1 is DDPM's ancestral sampler.
    A start where alpha_t = 0 (LinearPath or VPCosine at t = 1): x_t is pure noise, so eps_hat = x_t / sigma_t
    exactly and x0_hat = E[x_0 | x_t] = E[x_0], which an eps-prediction at t cannot tell. That first step
    predicts x_0 directly with the predictor at the step's end time s, x0_hat = (x_t - sigma_s eps(x_t, s)) /
    alpha_s = E[x_0 | x_s = x_t], which differs from E[x_0] by O(alpha_s): an O(alpha_s^2) error in x_s.
    """
    _check_nfe(nfe)
    _check_eta(eta)
    _check_interval(t_start, t_end)
    times = _grid(t_start, t_end, nfe, x)
    alphas, sigmas = schedule.alpha(times), schedule.sigma(times)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        noise = _randn(x, generator) if eta > 0 else None
        if i == 0 and float(alphas[0]) <= ALPHA_ZERO:
            eps_hat = x / sigmas[0]                                               # x_t = sigma_t eps when alpha_t = 0
            x0_hat = (x - sigmas[1] * eps(x, s.expand(len(x)))) / alphas[1]
            x = _ddim_update(x0_hat, eps_hat, alphas[0].new_zeros(()), sigmas[0], alphas[1], sigmas[1], eta, noise)
        else:
            eps_hat = eps(x, t.expand(len(x)))
            x0_hat = (x - sigmas[i] * eps_hat) / alphas[i]                    # as ddim_step, without its check
            x = _ddim_update(x0_hat, eps_hat, alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1], eta, noise)
    return x


def ancestral(eps: Predictor, schedule: Schedule, x: torch.Tensor, nfe: int, t_start: float = 1.0,
              t_end: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM's ancestral sampler (Ho et al. 2020, Alg. 2) over nfe uniform steps: ``ddim`` with eta = 1."""
    return ddim(eps, schedule, x, nfe, eta=1.0, t_start=t_start, t_end=t_end, generator=generator)


# -- stochastic samplers with a score -------------------------------------------------------------------------------
def _reverse_sde_step(score, schedule, x, t, s, noise):
    """One Euler-Maruyama step of the reverse SDE dx = [f - g^2 score] dt + g dW from t down to s < t
    (Song et al. 2021, eq. 6); noise None: the mean only."""
    t_batch = t.expand(len(x))
    f, g = schedule.sde(x, t_batch)
    g = _rows(g, x)
    x_mean = x - (f - g ** 2 * score(x, t_batch)) * (t - s)                    # dt = -(t - s)
    return x_mean if noise is None else x_mean + g * torch.sqrt(t - s) * noise


@torch.no_grad()
def reverse_sde(score: Predictor, schedule: Schedule, x: torch.Tensor, nfe: int, t_start: float = 1.0,
                t_end: float = 1e-3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler-Maruyama of the reverse-time SDE (Song et al. 2021, eq. 6) over nfe uniform steps from x at
    t_start (batch, d); the last step adds no noise (it returns the mean, as Song et al.'s code). -> (batch, d)."""
    _check_nfe(nfe)
    _check_interval(t_start, t_end)
    _check_alpha_positive(schedule, t_start, "reverse_sde")
    times = _grid(t_start, t_end, nfe, x)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        noise = _randn(x, generator) if i < nfe - 1 else None
        x = _reverse_sde_step(score, schedule, x, t, s, noise)
    return x


def _langevin_correct(score, schedule, x, t, s, snr, generator):
    """One Langevin corrector step at time t with the signal-to-noise step rule (Song et al. 2021, Alg. 4-5):
    eps = 2 a (snr ||z|| / ||score||)^2, x <- x + eps score + sqrt(2 eps) z, with a = 1 - beta_i =
    (alpha_t / alpha_s)^2 (1 for VE). Norms are averaged over the batch, as in Song et al.'s code."""
    grad = score(x, t.expand(len(x)))
    z = _randn(x, generator)
    grad_norm = grad.flatten(1).norm(dim=1).mean()
    noise_norm = z.flatten(1).norm(dim=1).mean()
    a = (schedule.alpha(t) / schedule.alpha(s)) ** 2
    step = 2 * a * (snr * noise_norm / grad_norm.clamp_min(1e-12)) ** 2
    return x + step * grad + torch.sqrt(2 * step) * z


@torch.no_grad()
def predictor_corrector(score: Predictor, schedule: Schedule, x: torch.Tensor, nfe: int, n_corrector: int = 1,
                        snr: float = 0.16, t_start: float = 1.0, t_end: float = 1e-3,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 2-3): at each of nfe // (1 + n_corrector) uniform
    times, n_corrector Langevin steps at t, then one reverse-diffusion (Euler-Maruyama) step to the next time
    (the order of Song et al.'s code); the last predictor step adds no noise. x: (batch, d) -> (batch, d)."""
    if n_corrector < 0:
        raise ValueError(f"n_corrector must be >= 0, got {n_corrector}.")
    if snr <= 0:
        raise ValueError(f"The corrector's signal-to-noise ratio snr must be > 0, got {snr}.")
    _check_nfe(nfe, 1 + n_corrector, f" (1 + n_corrector={n_corrector} per step)")
    _check_interval(t_start, t_end)
    _check_alpha_positive(schedule, t_start, "predictor_corrector")
    n_steps = nfe // (1 + n_corrector)
    times = _grid(t_start, t_end, n_steps, x)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        for _ in range(n_corrector):
            x = _langevin_correct(score, schedule, x, t, s, snr, generator)
        x = _reverse_sde_step(score, schedule, x, t, s, _randn(x, generator) if i < n_steps - 1 else None)
    return x


@torch.no_grad()
def annealed_langevin(score: Predictor, schedule: Schedule, x: torch.Tensor, n_levels: int, steps_per_level: int,
                      step_size: float, generator: torch.Generator | None = None, t_min: float = 0.0) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) at the noise levels sigma_i of the times
    linspace(1, t_min, n_levels) of a schedule (a VE one in the paper): at level i, steps_per_level steps

        x <- x + a_i / 2 score(x, t_i) + sqrt(a_i) z,   a_i = step_size sigma_i^2 / sigma_L^2,

    sigma_L the last (smallest) level. x: (batch, d), e.g. ``schedule.prior``; returns (batch, d), no denoising.
    """
    if n_levels < 1 or steps_per_level < 1:
        raise ValueError(f"n_levels and steps_per_level must be >= 1, got {n_levels}, {steps_per_level}.")
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size}.")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}.")
    times = torch.linspace(1.0, t_min, n_levels, dtype=x.dtype, device=x.device)
    sigmas = schedule.sigma(times)
    for t, sigma in zip(times, sigmas):
        a = step_size * (sigma / sigmas[-1]) ** 2
        for _ in range(steps_per_level):
            x = x + 0.5 * a * score(x, t.expand(len(x))) + torch.sqrt(a) * _randn(x, generator)
    return x


# -- likelihood ------------------------------------------------------------------------------------------------------
def _divergence(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | None) -> torch.Tensor:
    """div_x v: exactly (one backward per dimension) or Hutchinson's estimate mean_k z_k^T (dv/dx) z_k
    (Hutchinson 1989; FFJORD, Grathwohl et al. 2019, eq. 7). v, x: (batch, d); probes: (n_probes, batch, d)."""
    if not v.requires_grad:                                                    # v does not depend on x
        return v.new_zeros(len(x))
    if probes is None:
        columns = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=True, allow_unused=True)[0]
                   for i in range(x.shape[1])]
        return sum(c[:, i] if c is not None else v.new_zeros(len(x)) for i, c in enumerate(columns))
    estimate = v.new_zeros(len(x))
    for z in probes:
        vjp = torch.autograd.grad((v * z).sum(), x, retain_graph=True, allow_unused=True)[0]   # z^T dv/dx
        estimate = estimate + (vjp * z).sum(1) if vjp is not None else estimate
    return estimate / len(probes)


def _probes(n_probes: int, like: torch.Tensor, probe: str, generator) -> torch.Tensor:
    shape = (n_probes, *like.shape)
    if probe == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=like.device).to(like.dtype) * 2 - 1
    if probe == "gaussian":
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
    raise ValueError(f"Unknown probe {probe!r}; use 'rademacher' or 'gaussian'.")


@torch.no_grad()
def pf_ode_log_likelihood(velocity: Predictor, x0: torch.Tensor, prior_log_prob: Callable[[torch.Tensor], torch.Tensor],
                          t_end: float = 1.0, divergence: str = "exact", n_probes: int = 1, method: str = "dopri5",
                          rtol: float = 1e-5, atol: float = 1e-5, generator: torch.Generator | None = None,
                          probe: str = "rademacher") -> tuple[torch.Tensor, int]:
    """log p_0(x0) under the flow of ``velocity`` by the instantaneous change of variables (Chen et al. 2018,
    thm. 1; FFJORD, Grathwohl et al. 2019): integrate [x; int div v] from t = 0 to t_end with torchdiffeq, then

        log p_0(x_0) = log p_{t_end}(x_{t_end}) + int_0^{t_end} div v(x_t, t) dt,

    with prior_log_prob: (batch, d) -> (batch,) the density at t_end. divergence "exact" (autograd, one backward
    per dimension: low d) or "hutchinson" (n_probes probes, "rademacher" or "gaussian", fixed for the solve).
    x0: (batch, d). Returns (log_p: (batch,), the number of velocity evaluations).
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"Unknown divergence {divergence!r}; use 'exact' or 'hutchinson'.")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}.")
    if not 0.0 < t_end <= 1.0:
        raise ValueError(f"t_end must be in (0, 1], got {t_end}.")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"Unknown ODE method {method!r} for the likelihood; use one of {ADAPTIVE_METHODS}.")
    probes = _probes(n_probes, x0, probe, generator) if divergence == "hutchinson" else None
    n_evals = 0

    def augmented(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        nonlocal n_evals
        n_evals += 1
        with torch.enable_grad():
            x = state[0].detach().requires_grad_(True)
            v = velocity(x, t.to(x.dtype).expand(len(x)))
            div = _divergence(v, x, probes)
        return v.detach(), div.detach()                                        # d/dt [x, int div v]

    times = torch.tensor([0.0, t_end], dtype=x0.dtype, device=x0.device)
    x_path, div_path = odeint(augmented, (x0, x0.new_zeros(len(x0))), times, method=method, rtol=rtol, atol=atol,
                              options=_within(0.0, t_end, x0.dtype))
    log_prior = prior_log_prob(x_path[-1])
    if log_prior.shape != (len(x0),):
        raise ValueError(f"prior_log_prob must map (batch, d) to (batch,), got shape {tuple(log_prior.shape)}.")
    return log_prior + div_path[-1], n_evals
