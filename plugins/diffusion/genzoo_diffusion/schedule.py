"""`NoiseSchedule`: the forward (noising) process of a discrete-time diffusion model.

Built from a diffusers-compatible scheduler config dict (the keys of ``scheduler_config.json``),
so a genzoo model and a diffusers repository describe their noise the same way. The betas and
``alphas_cumprod`` are computed exactly as diffusers computes them (the cosine schedule in
float64 Python floats, everything stored as float32), which is what lets the samplers in
``samplers.py`` match diffusers' schedulers step for step.

Besides the tables it holds the training helpers (``add_noise``, ``velocity``, ``target``,
``snr``) and the conversions between a model's output and its estimates of x0 and the noise.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from genzoo.errors import OptionError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")

#: diffusers' DDPMScheduler defaults, the baseline every config is merged onto. Keys a config
#: carries that are not here (``_class_name``, solver settings ...) are kept but not interpreted.
DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "trained_betas": None,
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    # None: each sampler uses its diffusers default (DDPM/DDIM "leading", DPM-Solver "linspace").
    "timestep_spacing": None,
    "steps_offset": 0,
    "set_alpha_to_one": True,
    "variance_type": "fixed_small",
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
}


def cosine_betas(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The "squaredcos_cap_v2" betas (Nichol & Dhariwal), computed like diffusers'
    ``betas_for_alpha_bar``: Python float64 per step, capped at ``max_beta``, stored float32."""
    return torch.tensor(_cosine_betas(num_steps, max_beta), dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _cosine_betas(num_steps: int, max_beta: float) -> tuple[float, ...]:
    # cached: the Python loop is a millisecond of every model load, and must stay a loop of
    # math.cos (not a vectorised cos) to match diffusers bit for bit
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return tuple(min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                 for i in range(num_steps))


class NoiseSchedule:
    """The noise schedule of a diffusion model: betas, ``alphas_cumprod`` and helpers.

    ``NoiseSchedule(config)`` takes a diffusers-style scheduler config dict (missing keys get
    diffusers' DDPMScheduler defaults); ``to_config()`` gives the dict back for saving as
    ``scheduler_config.json``. The tables live on the CPU as float32; the helpers move them to
    the device of their input once and cache them there.
    """

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any):
        self.config = {**DEFAULTS, **(config or {}), **overrides}
        c = self.config
        self.num_train_timesteps = int(c["num_train_timesteps"])
        self.prediction_type = c["prediction_type"]
        self.clip_sample = bool(c["clip_sample"])
        self.clip_sample_range = float(c["clip_sample_range"])
        self.timestep_spacing = c["timestep_spacing"]
        self.steps_offset = int(c["steps_offset"])
        self.set_alpha_to_one = bool(c["set_alpha_to_one"])
        self.variance_type = c["variance_type"]
        self.thresholding = bool(c["thresholding"])
        self.dynamic_thresholding_ratio = float(c["dynamic_thresholding_ratio"])
        self.sample_max_value = float(c["sample_max_value"])
        self._check()
        self.betas = self._make_betas()
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self._cache: dict[tuple, torch.Tensor] = {}

    def _check(self) -> None:
        c = self.config
        if self.num_train_timesteps < 1:
            raise OptionError(f"num_train_timesteps must be positive, "
                              f"got {self.num_train_timesteps}")
        if c["trained_betas"] is None and c["beta_schedule"] not in BETA_SCHEDULES:
            raise OptionError(f"unknown beta_schedule {c['beta_schedule']!r}; "
                              f"use one of {', '.join(BETA_SCHEDULES)}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise OptionError(f"unknown prediction_type {self.prediction_type!r}; "
                              f"use one of {', '.join(PREDICTION_TYPES)}")
        if self.timestep_spacing not in (None, *TIMESTEP_SPACINGS):
            raise OptionError(f"unknown timestep_spacing {self.timestep_spacing!r}; "
                              f"use one of {', '.join(TIMESTEP_SPACINGS)}")
        if c.get("rescale_betas_zero_snr"):
            raise OptionError("rescale_betas_zero_snr is not supported by genzoo's samplers; "
                              "set it to false in the scheduler config")

    def _make_betas(self) -> torch.Tensor:
        c, n = self.config, self.num_train_timesteps
        if c["trained_betas"] is not None:
            betas = torch.tensor(c["trained_betas"], dtype=torch.float32)
            if betas.shape != (n,):
                raise OptionError(f"trained_betas has {betas.numel()} values; expected "
                                  f"num_train_timesteps = {n}")
            return betas
        if c["beta_schedule"] == "linear":
            return torch.linspace(c["beta_start"], c["beta_end"], n, dtype=torch.float32)
        if c["beta_schedule"] == "scaled_linear":
            return torch.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, n,
                                  dtype=torch.float32) ** 2
        return cosine_betas(n)

    def to_config(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (diffusers' key names)."""
        return {k: v for k, v in self.config.items() if not (k == "timestep_spacing" and v is None)}

    def __repr__(self) -> str:
        c = self.config
        return (f"NoiseSchedule({self.num_train_timesteps} steps, {c['beta_schedule']}, "
                f"{self.prediction_type})")

    # ---- per-timestep tables on the input's device --------------------------------------
    def _alphas_cumprod(self, like: torch.Tensor) -> torch.Tensor:
        """``alphas_cumprod`` on ``like``'s device, in its dtype (as diffusers' add_noise does)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = self.alphas_cumprod.to(like.device).to(like.dtype)
        return self._cache[key]

    def _coeffs(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), shaped to broadcast over ``x``."""
        ac = self._alphas_cumprod(x)[torch.as_tensor(t, device=x.device).long()]
        shape = (-1,) + (1,) * (x.dim() - 1) if ac.dim() else ()
        return (ac ** 0.5).reshape(shape), ((1 - ac) ** 0.5).reshape(shape)

    # ---- training helpers ---------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise (diffusers' ``add_noise``);
        ``t`` is a LongTensor of one timestep per sample, or an int."""
        a, s = self._coeffs(x0, t)
        return a * x0 + s * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """v = sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) x0 (diffusers' ``get_velocity``)."""
        a, s = self._coeffs(x0, t)
        return a * noise - s * x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """What the network learns to output at (x_t, t) for this schedule's prediction_type."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.velocity(x0, noise, t)
        return x0

    def snr(self, t) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) per timestep (float32), e.g.
        for min-SNR loss weighting."""
        t = torch.as_tensor(t).long()
        ac = self._alphas_cumprod(torch.empty(0, device=t.device))[t]
        return ac / (1 - ac)

    # ---- conversions of a model output ---------------------------------------------------
    def pred_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The model's estimate of the clean sample x0 (no clipping)."""
        a, s = self._coeffs(x_t, t)
        if self.prediction_type == "epsilon":
            return (x_t - s * model_out) / a
        if self.prediction_type == "v_prediction":
            return a * x_t - s * model_out
        return model_out

    def pred_eps(self, model_out: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The model's estimate of the noise in x_t."""
        a, s = self._coeffs(x_t, t)
        if self.prediction_type == "epsilon":
            return model_out
        if self.prediction_type == "v_prediction":
            return a * model_out + s * x_t
        return (x_t - a * model_out) / s
