"""Euler and Euler-ancestral sampling in sigma space, as diffusers' ``EulerDiscreteScheduler``
and ``EulerAncestralDiscreteScheduler`` run them.

Karras et al. (2022) rewrite the variance-preserving x_t = a x0 + s eps (a = sqrt(alpha_bar),
s = sqrt(1 - alpha_bar)) as x_sigma = x_t / a = x0 + sigma eps, with sigma = s / a: the
probability-flow ODE is then dx/dsigma = (x - x0) / sigma, which Euler's method steps. The
solver keeps its state in that scale; the network still sees the VP scale it was trained on,
x_sigma / sqrt(sigma^2 + 1) (diffusers' ``scale_model_input``), at a timestep that is
fractional under "linspace" spacing (its sigma interpolated linearly between training steps).

Every per-step coefficient is computed from 0-dim float32 tensors with diffusers' own
expressions, so each equals the scalar diffusers computes at that step (a vectorised division
can round differently from the scalar one), and ``samplers.sample`` drives this solver with the
same loop as the VP samplers.
"""
from __future__ import annotations

import numpy as np
import torch

from genzoo.errors import OptionError

from .schedule import NoiseSchedule

EULER_SAMPLERS = ("euler", "euler-a")
#: Sigma-schedule settings genzoo's Euler samplers run, per key: the accepted values, the
#: first being diffusers' default (the others are refused, not silently ignored).
_SUPPORTED = {"interpolation_type": ("linear",), "timestep_type": ("discrete",),
              "final_sigmas_type": ("zero", "sigma_min")}


def euler_timesteps(schedule: NoiseSchedule, spacing: str, steps: int) -> np.ndarray:
    """The float32 timesteps ``EulerDiscreteScheduler.set_timesteps`` (and the ancestral one,
    which computes them the same way) makes for ``steps`` steps with ``spacing``."""
    T = schedule.num_train_timesteps
    if spacing == "linspace":  # fractional: 0 .. T - 1 in equal float32 steps
        return np.linspace(0, T - 1, steps, dtype=np.float32)[::-1].copy()
    if spacing == "leading":
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1].copy().astype(np.float32)
        return ts + np.float32(schedule.steps_offset)
    return np.arange(T, 0, -T / steps).round().astype(np.float32) - np.float32(1)


def check_config(schedule: NoiseSchedule, sampler: str) -> None:
    """Refuse, in one line, scheduler settings the Euler samplers would not honour."""
    cfg = schedule.config
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        if cfg.get(key):
            raise OptionError(f"scheduler option {key} is not supported by genzoo's {sampler}; "
                              "set it to false or use the dpmsolver++ sampler")
    for key, accepted in _SUPPORTED.items():
        if sampler == "euler-a" and key == "final_sigmas_type":
            accepted = ("zero",)  # EulerAncestralDiscreteScheduler always ends at sigma 0
        value = cfg.get(key) or accepted[0]
        if value not in accepted:
            raise OptionError(f"scheduler option {key}={value!r} is not supported by genzoo's "
                              f"{sampler}; set it to {' or '.join(map(repr, accepted))}")
    if sampler == "euler-a" and schedule.prediction_type == "sample":
        raise OptionError("euler-a cannot run a prediction_type 'sample' model (diffusers' "
                          "EulerAncestralDiscreteScheduler has none); use the euler sampler")


def euler_sigmas(schedule: NoiseSchedule, timesteps, final: str = "zero") -> torch.Tensor:
    """Float32 sigmas at ``timesteps`` plus the final one (0, or sigma at t = 0 for
    ``final`` "sigma_min"), interpolated linearly in float64 as diffusers' ``np.interp``."""
    ac = schedule.alphas_cumprod
    table = (((1 - ac) / ac) ** 0.5).numpy()  # float32, as diffusers computes it
    sigmas = np.interp(np.asarray(timesteps, dtype=np.float32), np.arange(0, len(table)), table)
    last = float(table[0]) if final == "sigma_min" else 0.0
    return torch.from_numpy(np.concatenate([sigmas, [last]]).astype(np.float32))


class EulerSolver:
    """One Euler (or Euler-ancestral) run over ``timesteps``, in the interface
    ``samplers.sample`` drives: ``from_noise``, ``noised``, ``model_input`` and ``step``.

    ``noise()`` draws the per-sample noise the ancestral step adds (drawn every step, the
    last one included, as diffusers does, so the generators advance alike).
    """

    def __init__(self, schedule: NoiseSchedule, sampler: str, timesteps, noise):
        check_config(schedule, sampler)
        spacing = schedule.timestep_spacing or "linspace"
        self.schedule, self.noise, self.ancestral = schedule, noise, sampler == "euler-a"
        self.timesteps = list(timesteps)
        final = schedule.config.get("final_sigmas_type") or "zero"
        sig = euler_sigmas(schedule, timesteps, final if sampler == "euler" else "zero")
        top = sig.max()
        # diffusers' init_noise_sigma rule, which the pipelines' first latents follow:
        # sigma_max for linspace/trailing spacing, sqrt(sigma_max^2 + 1) for leading
        init = top if spacing in ("linspace", "trailing") else (top ** 2 + 1) ** 0.5
        self.init_noise_sigma = init.item()
        self.sigmas = sig.tolist()
        self.table = [self._row(sig[i], sig[i + 1]) for i in range(len(timesteps))]

    def _row(self, sigma: torch.Tensor, sigma_to: torch.Tensor) -> tuple[float, ...]:
        """(sigma, model input divisor, v-prediction output and input coefficients, dt,
        sigma_up) for one step, with diffusers' scalar expressions."""
        scale = (sigma ** 2 + 1) ** 0.5
        v_out, v_in = -sigma / (sigma ** 2 + 1) ** 0.5, sigma ** 2 + 1
        if self.ancestral:
            up = (sigma_to ** 2 * (sigma ** 2 - sigma_to ** 2) / sigma ** 2) ** 0.5
            dt, up = (sigma_to ** 2 - up ** 2) ** 0.5 - sigma, up  # down - sigma
        else:  # s_churn 0 (as pipelines call it): sigma_hat = sigma, no noise
            dt, up = sigma_to - sigma, torch.zeros(())
        return tuple(float(v) for v in (sigma, scale, v_out, v_in, dt, up))

    def from_noise(self, x_T: torch.Tensor) -> torch.Tensor:
        """The start from pure noise: x_T * init_noise_sigma (diffusers' prepare_latents)."""
        return x_T * self.init_noise_sigma

    def noised(self, i: int, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x0`` noised to step i's sigma: x0 + sigma * eps (diffusers' ``add_noise``)."""
        return x0 + eps * self.sigmas[i]

    def model_input(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The state in the VP scale the network expects (``scale_model_input``)."""
        return x / self.table[i][1]

    def step(self, i: int, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One Euler step from sigma_i to sigma_{i+1} (ancestral: to sigma_down, then noise
        scaled by sigma_up), in diffusers' order of operations."""
        sigma, _, v_out, v_in, dt, up = self.table[i]
        kind = self.schedule.prediction_type
        if kind == "epsilon":
            x0 = x - sigma * out
        elif kind == "v_prediction":
            x0 = out * v_out + x / v_in
        else:
            x0 = out
        x = x + (x - x0) / sigma * dt
        return x + self.noise() * up if self.ancestral else x
