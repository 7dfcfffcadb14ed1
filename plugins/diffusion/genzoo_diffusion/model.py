"""`DiffusionModel`: the house diffusion architecture ("diffusion-unet").

A compact UNet learns the velocity v (v-prediction) under a cosine noise schedule, trained
with min-SNR-gamma loss weighting — a parameterisation and weighting chosen because they
converge quickly, which is what a CPU budget needs. Samples come from the native samplers
(DDPM, DDIM, DPM-Solver++), which match diffusers' schedulers step for step.
"""
from __future__ import annotations

from typing import Any

import torch

from genzoo.errors import OptionError
from genzoo.model import GenerativeModel
from genzoo.options import Option
from genzoo.seeding import per_sample_randn

from .samplers import SAMPLERS, sample as run_sampler
from .schedule import NoiseSchedule
from .unet import UNet

DEFAULT_CONFIG: dict[str, Any] = {
    "image_shape": [1, 28, 28],
    "unet": {"channels": [32, 64, 64], "blocks": 1, "attention": [2], "dropout": 0.0},
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                  "prediction_type": "v_prediction", "clip_sample": True,
                  "clip_sample_range": 1.0},
    "min_snr_gamma": 5.0,
}


class DiffusionModel(GenerativeModel):
    """A denoising diffusion model over images in [-1, 1] (returned in [0, 1])."""

    arch = "diffusion-unet"
    family = "diffusion"
    modality = "image"
    uses_ema = True
    train_defaults = {"batch_size": 64, "lr": 2e-3, "warmup": 200, "weight_decay": 0.0,
                      "grad_clip": 1.0, "ema_decay": 0.999, "betas": (0.9, 0.99)}
    sample_defaults = {"sampler": "dpmsolver++", "steps": 20, "eta": 0.0, "batch_size": 256}
    sample_options = (
        Option("sampler", "str", "dpmsolver++", "the reverse-process solver", choices=SAMPLERS),
        Option("steps", "int", 20, "denoising steps (more: slower, closer to the model)",
               min=1, max=10000),
        Option("eta", "float", 0.0, "DDIM noise: 0 deterministic, 1 DDPM-like", min=0.0, max=1.0),
        Option("batch_size", "int", 256, "samples per network batch", min=1),
    )
    #: Sample in channels-last layout in fp32 and on GPUs; see ``_sampling_layout`` for the
    #: exception. Measured on CPU: house UNet ~45% faster, diffusers' UNet2DModel (the
    #: adapter) 6-16%, its samples within 2e-5 of diffusers' contiguous-layout pipeline.
    channels_last = True

    def __init__(self, config: dict[str, Any] | None = None):
        config = {**DEFAULT_CONFIG, **(config or {})}
        super().__init__(config)
        self.image_shape = tuple(config["image_shape"])
        self.schedule = NoiseSchedule(config["scheduler"])
        self.unet = self.build_network(config)

    def build_network(self, config: dict[str, Any]) -> torch.nn.Module:
        """The denoising network; the diffusers adapter overrides this."""
        u = config["unet"]
        return UNet(self.image_shape[0], tuple(u["channels"]), u["blocks"], tuple(u["attention"]),
                    u.get("dropout", 0.0))

    def model_output(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's prediction (per ``schedule.prediction_type``) at noisy ``x``, step ``t``."""
        return self.unet(x, t)

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, generators, sampler="dpmsolver++", steps=20, eta=0.0, progress=None):
        """Samples in [0, 1]: initial noise per sample from its own generator, then the sampler."""
        if sampler not in SAMPLERS:
            raise OptionError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        dtype = self.autocast_dtype or torch.float32
        layout = self._sampling_layout()
        x = per_sample_randn(generators, self.image_shape, device=self.device, dtype=torch.float32)
        x = x.contiguous(memory_format=layout)

        def fn(xt, t):
            return self.model_output(xt.to(dtype), t).float()
        x0 = run_sampler(fn, x, self.schedule, sampler=sampler, steps=steps,
                         generators=generators, eta=eta, progress=progress)
        return ((x0 + 1) / 2).clamp(0, 1)

    def _sampling_layout(self) -> torch.memory_format:
        """The memory format to sample in, with the network converted to it (once).

        Channels-last makes oneDNN's and cuDNN's convolutions faster, except under bf16/fp16
        autocast on a CPU, where autocast runs GroupNorm in fp32 on the channels-last
        activations, a slow path: there the default layout is faster (house UNet 41 against
        33 samples/s, diffusers' UNet2DModel 69 against 98 ms a batch of 64)."""
        cpu_autocast = self.device.type == "cpu" and self.autocast_dtype is not None
        layout = (torch.channels_last if self.channels_last and not cpu_autocast
                  else torch.contiguous_format)
        if getattr(self, "_layout", torch.contiguous_format) != layout:
            self.unet.to(memory_format=layout)
            self._layout = layout
        return layout

    # ---- training ------------------------------------------------------------------------
    def training_loss(self, images: torch.Tensor) -> torch.Tensor:
        """Min-SNR-weighted MSE on the schedule's target at uniformly drawn timesteps."""
        x0 = images * 2 - 1
        n = x0.shape[0]
        t = torch.randint(0, self.schedule.num_train_timesteps, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.schedule.add_noise(x0, noise, t)
        target = self.schedule.target(x0, noise, t)
        err = (self.model_output(xt, t).float() - target).pow(2).mean(dim=(1, 2, 3))
        return (err * self._loss_weight(t)).mean()

    def _loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """min-SNR-gamma weights (Hang et al., 2023), expressed for the prediction type."""
        gamma = self.config.get("min_snr_gamma")
        if not gamma:
            return torch.ones_like(t, dtype=torch.float32)
        snr = self.schedule.snr(t).to(t.device)
        w = torch.clamp(snr, max=gamma)
        kind = self.schedule.prediction_type
        if kind == "v_prediction":
            return w / (snr + 1)
        if kind == "epsilon":
            return w / snr.clamp(min=1e-8)
        return w

    def num_timesteps(self) -> int:
        """The number of training timesteps of the schedule."""
        return self.schedule.num_train_timesteps
