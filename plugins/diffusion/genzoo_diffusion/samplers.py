"""Native diffusion samplers that reproduce diffusers' schedulers step for step.

    x0 = sample(model_fn, x_T, schedule, sampler="dpmsolver++", steps=20, generators=gens)

- ``ddpm``: ancestral sampling, diffusers' ``DDPMScheduler`` (variance_type, clip_sample,
  thresholding, any step count with diffusers' timestep spacing).
- ``ddim``: diffusers' ``DDIMScheduler`` (eta = 0 deterministic; eta > 0 adds noise).
- ``dpmsolver++``: diffusers' ``DPMSolverMultistepScheduler`` with algorithm_type
  "dpmsolver++" (solver_order 2, midpoint, lower_order_final, final_sigmas_type "zero").
- ``euler`` / ``euler-a``: diffusers' ``EulerDiscreteScheduler`` and
  ``EulerAncestralDiscreteScheduler``, in sigma space (``euler.py``).

Each sampler first builds its per-step coefficient table in float32 with diffusers' own
formulas, so each coefficient equals the float32 scalar diffusers computes at that step (near
t = 0 DDPM's float32 round-off is visible, and matching it keeps the two loops together). The
loop then does one model call and a few tensor ops per step on the model's device, with the
coefficients as Python numbers. Stochastic samplers draw the noise of sample i from
``generators[i]`` on the CPU with shape (C, H, W) and move it to the device: the same draws
diffusers' ``randn_tensor`` makes from a list of generators.

``sample`` drives a solver through four calls: ``from_noise(x_T)`` (the start from pure
noise), ``noised(i, x0, eps)`` (x0 noised to step i's timestep), ``model_input(i, x)`` (what
the network sees) and ``step(i, out, x)``. The VP samplers' state is x_t itself; the Euler
samplers' is x0 + sigma * eps.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from genzoo.errors import OptionError
from genzoo.seeding import per_sample_randn

from .euler import EULER_SAMPLERS, EulerSolver, euler_timesteps
from .schedule import NoiseSchedule

SAMPLERS = ("ddpm", "ddim", "dpmsolver++", *EULER_SAMPLERS)
#: diffusers' default timestep spacing per scheduler, used when the config names none.
DEFAULT_SPACING = {"ddpm": "leading", "ddim": "leading", "dpmsolver++": "linspace",
                   "euler": "linspace", "euler-a": "linspace"}
MASK_NOISE = ("fresh", "initial")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample(model_fn: ModelFn, x_T: torch.Tensor, schedule: NoiseSchedule,
           sampler: str = "dpmsolver++", steps: int = 20,
           generators: Sequence[torch.Generator] | None = None,
           progress: Callable[[int, int], None] | None = None, eta: float = 0.0, *,
           init: torch.Tensor | None = None, strength: float = 1.0,
           mask: torch.Tensor | None = None, start: int | None = None,
           mask_noise: str = "fresh") -> torch.Tensor:
    """Denoise ``x_T`` (N, C, H, W, standard normal) into x0 with ``sampler`` in ``steps`` steps.

    ``model_fn(x, t)`` returns the network output for latents x (in the variance-preserving
    scale it was trained on) and a tensor t of one timestep per sample, in the schedule's
    prediction_type: a LongTensor for ddpm/ddim/dpmsolver++, float32 for euler/euler-a (whose
    "linspace" timesteps are fractional). ``generators`` (one CPU generator per sample) feed
    the stochastic samplers (ddpm, ddim with eta > 0, euler-a); None draws from torch's global
    generator. ``progress(done, total)`` is called after each step. ``eta`` is DDIM's.

    Steering without retraining, with ``init`` (N, C, H, W) in the model's latent space:

    - image-to-image (SDEdit, Meng et al. 2022): with ``strength`` s < 1 the last
      ``round(s * steps)`` steps run, from ``init`` noised with ``x_T`` to the first of them;
      s = 1 ignores ``init`` unless ``mask`` is given. ``start`` (a step index) overrides
      the rounding: diffusers' img2img pipelines pass ``steps - int(s * steps)``, and an
      explicit ``start`` of 0 still starts from ``init`` noised to the first timestep.
    - inpainting: ``mask`` (N, 1 or C, H, W; 1 = regenerate, 0 = keep) replaces the kept
      region after every step with ``init`` noised to the level the next step starts from,
      and with ``init`` itself at the end: the replacement method that RePaint (Lugmayr et
      al. 2022) builds on, without its resampling jumps. ``mask_noise`` "fresh" draws new
      noise for it each step; "initial" reuses ``x_T``, as diffusers'
      StableDiffusionInpaintPipeline does with a 4-channel UNet. A masked run that starts at
      step 0 starts from pure noise, as that pipeline does at strength 1.
    """
    _check_args(sampler, eta, generators, x_T, mask_noise)
    timesteps = make_timesteps(schedule, sampler, steps)
    n = len(timesteps)
    begin = _first_index(n, init, strength, start)
    noise = _noise_fn(x_T, generators)
    t_dtype = torch.float32 if sampler in EULER_SAMPLERS else torch.long
    t_batches = torch.tensor(timesteps, dtype=t_dtype).to(x_T.device)[:, None]
    t_batches = t_batches.repeat(1, x_T.shape[0])
    solver = _solver(schedule, sampler, timesteps, noise, eta, t_batches)
    from_noise = init is None or (begin == 0 and (mask is not None or start is None))
    x = solver.from_noise(x_T) if from_noise else solver.noised(begin, init, x_T)
    keep = None if mask is None else _keeper(solver, init, mask, noise, x_T, mask_noise)
    for i in range(begin, n):
        out = model_fn(solver.model_input(i, x), t_batches[i]).to(x.dtype)
        x = solver.step(i, out, x)
        if keep is not None:
            x = keep(i, x)
        if progress is not None:
            progress(i + 1 - begin, n - begin)
    return x


def _check_args(sampler: str, eta: float, generators, x_T: torch.Tensor, mask_noise: str):
    """One-line refusals of the options ``sample`` cannot run."""
    if sampler not in SAMPLERS:
        raise OptionError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if sampler != "ddim" and eta:
        raise OptionError("eta applies only to the ddim sampler")
    if not 0.0 <= float(eta) <= 1.0:
        raise OptionError(f"eta must be between 0 and 1, got {eta}")
    if generators is not None and len(generators) != x_T.shape[0]:
        raise OptionError(f"got {len(generators)} generators for {x_T.shape[0]} samples; "
                          "pass one per sample")
    if mask_noise not in MASK_NOISE:
        raise OptionError(f"unknown mask_noise {mask_noise!r}; use one of {', '.join(MASK_NOISE)}")


def _first_index(n: int, init, strength: float, start: int | None) -> int:
    """The index of the first step to run: ``start`` if given, else from ``strength``."""
    if start is None:
        return first_step(n, strength) if init is not None else 0
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < n:
        raise OptionError(f"start must be a step index from 0 to {n - 1}, got {start!r}")
    if start > 0 and init is None:
        raise OptionError("start after step 0 needs init (the image to start from)")
    return int(start)


def first_step(steps: int, strength: float) -> int:
    """The index of the first step image-to-image runs at ``strength`` (0 = all steps)."""
    if isinstance(strength, bool) or not 0.0 < float(strength) <= 1.0:
        raise OptionError(f"strength must be in (0, 1], got {strength!r}")
    return steps - max(1, min(steps, round(float(strength) * steps)))


def _keeper(solver, init, mask, noise, x_T, mask_noise: str):
    """``keep(i, x)``: after step i, the kept region (mask 0) becomes ``init`` noised to the
    timestep step i + 1 starts from (the clean ``init`` after the last step)."""
    if init is None:
        raise OptionError("a mask needs an init image (the picture to complete)")
    mask = mask.to(init.dtype)
    last = len(solver.timesteps) - 1

    def keep(i, x):
        eps = (noise() if mask_noise == "fresh" else x_T) if i < last else None
        known = init if i == last else solver.noised(i + 1, init, eps)
        return mask * x + (1 - mask) * known
    return keep


class _VPSolver:
    """ddpm/ddim/dpmsolver++ in ``sample``'s solver interface: the state is x_t itself."""

    def __init__(self, schedule: NoiseSchedule, timesteps, step, t_batches: torch.Tensor):
        self.schedule, self.timesteps, self.step, self.t = schedule, timesteps, step, t_batches

    def from_noise(self, x_T):
        """Pure noise is x_T itself (init_noise_sigma 1)."""
        return x_T

    def noised(self, i, x0, eps):
        """``x0`` noised to step i's timestep (diffusers' ``add_noise``)."""
        return self.schedule.add_noise(x0, eps, self.t[i])

    def model_input(self, i, x):
        """The network sees the state unscaled."""
        return x


def _solver(schedule: NoiseSchedule, sampler: str, timesteps, noise, eta: float, t_batches):
    """The solver ``sample`` drives for ``sampler`` over ``timesteps``."""
    if sampler in EULER_SAMPLERS:
        return EulerSolver(schedule, sampler, timesteps, noise)
    step_fns = {"ddpm": _ddpm, "ddim": _ddim, "dpmsolver++": _dpmsolver_pp}
    step = step_fns[sampler](schedule, timesteps, noise, eta)
    return _VPSolver(schedule, timesteps, step, t_batches)


def make_timesteps(schedule: NoiseSchedule, sampler: str, steps: int) -> list[int] | list[float]:
    """The descending training timesteps ``sampler`` visits in ``steps`` steps, exactly as the
    matching diffusers scheduler's ``set_timesteps`` makes them: ints, and for euler/euler-a
    floats (fractional under "linspace" spacing)."""
    T = schedule.num_train_timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= T:
        raise OptionError(f"steps must be an integer from 1 to {T}, got {steps!r}")
    spacing = schedule.timestep_spacing or DEFAULT_SPACING[sampler]
    if sampler == "dpmsolver++":
        ts = _dpm_timesteps(schedule, spacing, steps)
    elif sampler in EULER_SAMPLERS:
        ts = euler_timesteps(schedule, spacing, steps)
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1].astype(np.int64)
        ts = ts + schedule.steps_offset
    else:  # trailing
        ts = np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1
    kind = float if sampler in EULER_SAMPLERS else int
    out: list = [kind(t) for t in ts]
    if len(set(out)) != len(out) or not all(0 <= t <= T - 1 for t in out):
        raise OptionError(f"{steps} steps is too many for {sampler} with {spacing!r} timestep "
                          f"spacing over {T} training steps; use fewer steps")
    return out


def _dpm_timesteps(schedule: NoiseSchedule, spacing: str, steps: int) -> np.ndarray:
    """DPMSolverMultistepScheduler.set_timesteps: steps + 1 points, the last one dropped."""
    T = schedule.num_train_timesteps
    # diffusers stops where log-SNR falls below lambda_min_clipped (default -inf: never).
    ac = schedule.alphas_cumprod
    lambdas = torch.log(torch.sqrt(ac)) - torch.log(torch.sqrt(1 - ac))
    lam_min = float(schedule.config.get("lambda_min_clipped", -math.inf))
    last = T - int(torch.searchsorted(torch.flip(lambdas, [0]), lam_min))
    if spacing == "linspace":
        return np.linspace(0, last - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = last // (steps + 1)
        ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].astype(np.int64)
        return ts + schedule.steps_offset
    return np.arange(last, 0, -T / steps).round().astype(np.int64) - 1


def _noise_fn(x: torch.Tensor, generators):
    """A function drawing one standard-normal tensor shaped like ``x`` for the next step."""
    if generators is None:
        return lambda: torch.randn(x.shape, device=x.device, dtype=x.dtype)
    return lambda: per_sample_randn(generators, tuple(x.shape[1:]), device=x.device, dtype=x.dtype)


def _rows(*columns: torch.Tensor) -> list[tuple]:
    """Per-step tuples of Python numbers from per-step float32 coefficient vectors."""
    return list(zip(*(c.tolist() for c in columns)))


def _to_x0(schedule: NoiseSchedule, out: torch.Tensor, x: torch.Tensor, a: float, s: float):
    """The x0 estimate from the model output at a timestep where x = a * x0 + s * eps
    (a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar))."""
    if schedule.prediction_type == "epsilon":
        return (x - s * out) / a
    if schedule.prediction_type == "v_prediction":
        return a * x - s * out
    return out


def _to_eps(schedule: NoiseSchedule, out: torch.Tensor, x: torch.Tensor, a: float, s: float):
    """The noise estimate from the model output (same conventions as ``_to_x0``)."""
    if schedule.prediction_type == "epsilon":
        return out
    if schedule.prediction_type == "v_prediction":
        return a * out + s * x
    return (x - a * out) / s


def _clip_x0(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """DDPM/DDIM's x0 clipping: dynamic thresholding if configured, else clip_sample."""
    if schedule.thresholding:
        return _threshold(schedule, x0)
    if schedule.clip_sample:
        r = schedule.clip_sample_range
        return x0.clamp(-r, r)
    return x0


def _threshold(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """Imagen's dynamic thresholding, per sample, as diffusers' ``_threshold_sample``."""
    flat = x0.float().reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), schedule.dynamic_thresholding_ratio, dim=1)
    s = s.clamp(min=1, max=schedule.sample_max_value)[:, None]
    return (flat.clamp(-s, s) / s).reshape(x0.shape).to(x0.dtype)


# ---- the samplers: each returns step(i, model_out, x) -> next x ------------------------------

def _ddpm(schedule: NoiseSchedule, timesteps: list[int], noise, eta: float):
    """DDPMScheduler.step: posterior mean from the (clipped) x0 estimate, plus noise if t > 0."""
    kind = schedule.variance_type
    if kind not in ("fixed_small", "fixed_small_log", "fixed_large"):
        raise OptionError(f"variance_type {kind!r} is not supported by the ddpm sampler; use "
                          "fixed_small, fixed_small_log or fixed_large")
    t = torch.tensor(timesteps)
    a_t = schedule.alphas_cumprod[t]
    a_prev = torch.cat([a_t[1:], torch.ones(1)])  # the previous *visited* step; 1 after t = 0
    beta_prod_t, beta_prod_prev = 1 - a_t, 1 - a_prev
    alpha_step = a_t / a_prev
    beta_step = 1 - alpha_step  # the effective beta of this (possibly strided) step
    c_x0 = (a_prev ** 0.5 * beta_step) / beta_prod_t
    c_xt = alpha_step ** 0.5 * beta_prod_prev / beta_prod_t
    var = torch.clamp(beta_prod_prev / beta_prod_t * beta_step, min=1e-20)
    std = {"fixed_small": var ** 0.5, "fixed_small_log": torch.exp(0.5 * torch.log(var)),
           "fixed_large": beta_step ** 0.5}[kind]
    table = _rows(a_t ** 0.5, beta_prod_t ** 0.5, c_x0, c_xt, std)

    def step(i, out, x):
        a, s, c_x0, c_xt, std = table[i]
        x0 = _to_x0(schedule, out, x, a, s)
        x = c_x0 * _clip_x0(schedule, x0) + c_xt * x
        return x + std * noise() if timesteps[i] > 0 else x  # diffusers adds noise while t > 0
    return step


def _ddim(schedule: NoiseSchedule, timesteps: list[int], noise, eta: float):
    """DDIMScheduler.step (use_clipped_model_output False, as diffusers' pipeline calls it)."""
    ac = schedule.alphas_cumprod
    final = torch.tensor(1.0) if schedule.set_alpha_to_one else ac[0]
    t = torch.tensor(timesteps)
    prev = t - schedule.num_train_timesteps // len(timesteps)  # diffusers' prev = t - T // steps
    a_t = ac[t]
    a_prev = torch.where(prev >= 0, ac[prev.clamp(min=0)], final)
    beta_prod_t, beta_prod_prev = 1 - a_t, 1 - a_prev
    std = eta * ((beta_prod_prev / beta_prod_t) * (1 - a_t / a_prev)) ** 0.5
    c_eps = torch.clamp(1 - a_prev - std ** 2, min=0) ** 0.5
    table = _rows(a_t ** 0.5, beta_prod_t ** 0.5, a_prev ** 0.5, c_eps, std)

    def step(i, out, x):
        a, s, c_x0, c_eps, std = table[i]
        x0, eps = _to_x0(schedule, out, x, a, s), _to_eps(schedule, out, x, a, s)
        x = c_x0 * _clip_x0(schedule, x0) + c_eps * eps
        return x + std * noise() if eta > 0 else x  # diffusers draws even when std is 0
    return step


def _dpmsolver_pp(schedule: NoiseSchedule, timesteps: list[int], noise, eta: float):
    """DPMSolverMultistepScheduler, algorithm_type "dpmsolver++": multistep in log-SNR
    (lambda) on the data prediction x0; first order on the first step and (lower_order_final)
    the last one, second order in between."""
    cfg = schedule.config
    order = int(cfg.get("solver_order", 2))
    solver_type = cfg.get("solver_type", "midpoint")
    final_type = cfg.get("final_sigmas_type", "zero")
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                "use_lu_lambdas", "use_flow_sigmas"):
        if cfg.get(key):
            raise OptionError(f"scheduler option {key} is not supported by genzoo's dpmsolver++; "
                              "set it to false or use the ddim sampler")
    if order not in (1, 2) or solver_type not in ("midpoint", "heun") \
            or final_type not in ("zero", "sigma_min"):
        raise OptionError("dpmsolver++ supports solver_order 1 or 2, solver_type midpoint or "
                          "heun, final_sigmas_type zero or sigma_min; fix the scheduler config")
    n = len(timesteps)
    ac = schedule.alphas_cumprod
    rho = ((1 - ac) / ac) ** 0.5  # diffusers' "sigmas": the noise-to-signal ratio
    last = torch.zeros(1) if final_type == "zero" else rho[:1]
    rho = torch.cat([rho[torch.tensor(timesteps)], last])
    alpha = 1 / ((rho ** 2 + 1) ** 0.5)
    sigma = rho * alpha
    lam = torch.log(alpha) - torch.log(sigma)  # log-SNR / 2; +inf at a zero final sigma
    h = lam[1:] - lam[:-1]
    phi = alpha[1:] * (torch.exp(-h) - 1.0)
    r0 = torch.cat([torch.ones(1), h[:-1] / h[1:]])  # h_0 / h (unused on the first step)
    if solver_type == "midpoint":
        c_d1 = 0.5 * phi
    else:  # heun
        c_d1 = -(alpha[1:] * ((torch.exp(-h) - 1.0) / h + 1.0))
    low_final = cfg.get("lower_order_final", True)
    last_low = cfg.get("euler_at_final", False) or (low_final and n < 15) or final_type == "zero"
    second = [order == 2 and i > 0 and not (i == n - 1 and last_low) for i in range(n)]
    table = _rows(alpha[:-1], sigma[:-1], sigma[1:] / sigma[:-1], phi, c_d1, 1.0 / r0)
    prev_x0 = [None]  # the previous step's x0 estimate (m1 in diffusers)

    def step(i, out, x):
        a, s, c_x, phi, c_d1, inv_r0 = table[i]
        x0 = _to_x0(schedule, out, x, a, s)  # no clip_sample in DPM-Solver
        if schedule.thresholding:
            x0 = _threshold(schedule, x0)
        nxt = c_x * x - phi * x0
        if second[i] and prev_x0[0] is not None:  # D1 = (m0 - m1) / r0 (first-order at a
            # late start, as diffusers' lower_order_nums counts from the image-to-image begin)
            nxt = nxt - c_d1 * (inv_r0 * (x0 - prev_x0[0]))
        prev_x0[0] = x0
        return nxt
    return step
