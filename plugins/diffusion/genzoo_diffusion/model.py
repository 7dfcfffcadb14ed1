"""`DiffusionModel`: the house diffusion architecture ("diffusion-unet").

A compact UNet learns the velocity v (v-prediction) under a cosine noise schedule, trained
with min-SNR-gamma loss weighting — a parameterisation and weighting chosen because they
converge quickly, which is what a CPU budget needs. Samples come from the native samplers
(DDPM, DDIM, DPM-Solver++, Euler, Euler-ancestral), which match diffusers' schedulers step for step.
"""
from __future__ import annotations

from typing import Any

import torch

from genzoo.errors import OptionError
from genzoo.model import GenerativeModel
from genzoo.options import Option, with_classes
from genzoo.seeding import per_sample_labels, per_sample_randn

from .samplers import SAMPLERS, sample as run_sampler
from .schedule import NoiseSchedule
from .unet import UNet

#: Classifier-free guidance scale used with a label unless asked otherwise: the smallest
#: measured scale whose label accuracy passed 98% (bundled diffusion-mnist, 1,000 samples,
#: ``benchmarks/eval_labels.py diffusion-mnist --guidance 1,1.5,2,3``: 97.0% / FD 3.12 at 1,
#: 99.7% / 5.69 at 1.5, 100% / 8.92 at 2, 100% / 13.83 at 3; more guidance, less variety).
DEFAULT_GUIDANCE = 1.5
#: The options only a class-conditional network takes.
LABEL_OPTIONS = ("label", "guidance")

DEFAULT_CONFIG: dict[str, Any] = {
    "image_shape": [1, 28, 28],
    "unet": {"channels": [32, 64, 64], "blocks": 1, "attention": [2], "dropout": 0.0},
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                  "prediction_type": "v_prediction", "clip_sample": True,
                  "clip_sample_range": 1.0},
    "min_snr_gamma": 5.0,
    # 0: unconditional. N: class labels 0..N-1, each dropped to "no label" with probability
    # label_dropout in training, so one model samples both ways (classifier-free guidance).
    "num_classes": 0,
    "label_dropout": 0.1,
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
        Option("label", "int", None, "class to sample (one, or one per sample: 3,1,4); none: "
               "unconditional", min=0, condition=True, per_sample=True),
        Option("guidance", "float", None, f"classifier-free guidance scale (1: none; more: more "
               f"typical of the class); default {DEFAULT_GUIDANCE:g} with a label, 1 without",
               min=0.0, max=20.0),
        Option("init", "image", None, "start from this picture (image-to-image, or the "
               "picture a mask completes)", condition=True, per_sample=True),
        Option("strength", "float", 1.0, "with init: how far to move from it (0-1]; 1 "
               "redraws it completely", min=0.0, max=1.0),
        Option("mask", "image", None, "with init: white regenerates, black keeps "
               "(inpainting)", condition=True, per_sample=True),
    )
    #: Whether channels-last may be used for sampling: on a GPU always, on a CPU in fp32 where
    #: it measured faster than the default layout on that CPU (``genzoo.levers``; the house
    #: UNet 1.45x faster on an AMD EPYC), never under CPU autocast (see ``_sampling_layout``).
    #: The diffusers format turns it off by default: channels-last convolutions round
    #: differently from diffusers' contiguous pipelines (5.6e-4 to 1.9e-3 after DDIM-10 on
    #: ddpm-butterflies-128's config).
    channels_last = True
    #: Without a label, a class-conditional house UNet samples the mixture of its classes:
    #: each sample's label drawn from the class prior (``config["class_prior"]``, the training
    #: labels' frequencies; uniform if absent) with its own generator, unguided. Its "no label"
    #: path, trained on only the 10% of steps whose label was dropped, serves guidance; alone
    #: it measured FD 17.13 against 3.12 for labels 0-9 in turn, both at dpm++-20 on 1,000
    #: samples (benchmarks/eval_table.py before this rule, eval_labels.py --guidance 1). The
    #: diffusers format keeps the null class: a repository says nothing of its class prior.
    unlabelled_from_prior = True

    def __init__(self, config: dict[str, Any] | None = None):
        config = {**DEFAULT_CONFIG, **(config or {})}
        super().__init__(config)
        self.image_shape = tuple(config["image_shape"])
        self.schedule = NoiseSchedule(config["scheduler"])
        self.unet = self.build_network(config)

    def build_network(self, config: dict[str, Any]) -> torch.nn.Module:
        """The denoising network; the diffusers format overrides this."""
        u = config["unet"]
        return UNet(self.image_shape[0], tuple(u["channels"]), u["blocks"], tuple(u["attention"]),
                    u.get("dropout", 0.0), num_classes=int(config.get("num_classes") or 0))

    @property
    def num_classes(self) -> int:
        """How many class labels the network takes (0: unconditional)."""
        return int(self.config.get("num_classes") or 0)

    def model_output(self, x: torch.Tensor, t: torch.Tensor,
                     label: torch.Tensor | None = None) -> torch.Tensor:
        """The network's prediction (per ``schedule.prediction_type``) at noisy ``x``, step
        ``t``, for class ``label`` (None or ``num_classes``: no label)."""
        if self.num_classes:
            return self.unet(x, t, label)
        return self.unet(x, t)

    # ---- sampling ------------------------------------------------------------------------
    def options(self) -> dict[str, Option]:
        """The declared options; class labels and guidance only for a network that takes them."""
        return with_classes(super().options(), self.num_classes, LABEL_OPTIONS)

    def generate(self, generators, sampler="dpmsolver++", steps=20, eta=0.0, progress=None,
                 label=None, guidance=None, init=None, strength=1.0, mask=None):
        """Samples in [0, 1]: initial noise per sample from its own generator, then the sampler;
        ``label`` (per sample) with classifier-free ``guidance``; ``init`` with ``strength``
        (image-to-image) or ``mask`` (inpainting), see ``samplers.sample``."""
        if sampler not in SAMPLERS:
            raise OptionError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        if mask is not None and init is None:
            raise OptionError("mask needs init: the picture whose masked part is redrawn")
        dtype = self.autocast_dtype or torch.float32
        layout = self._sampling_layout(len(generators))
        x = per_sample_randn(generators, self.image_shape, device=self.device, dtype=torch.float32)
        x = x.contiguous(memory_format=layout)
        if guidance is None:
            guidance = DEFAULT_GUIDANCE if label is not None else 1.0
        if self.num_classes and self.unlabelled_from_prior:
            # drawn whether or not a label is given: label=k gives the samples that drew k
            prior = torch.tensor(self.config.get("class_prior") or [1.0] * self.num_classes)
            labels = per_sample_labels(generators, prior, label, device=self.device)
        else:
            labels = self._labels(label, len(generators))
        fn = self._guided_fn(dtype, labels, guidance)
        x0 = run_sampler(fn, x, self.schedule, sampler=sampler, steps=steps,
                         generators=generators, eta=eta, progress=progress,
                         init=self._model_space(init), strength=strength,
                         mask=None if mask is None else (mask.to(self.device) > 0.5).float())
        return ((x0 + 1) / 2).clamp(0, 1)

    def _labels(self, label, n: int) -> torch.Tensor | None:
        """Class labels as an (n,) tensor on the device (None: unconditional)."""
        if label is None:
            return None
        labels = torch.as_tensor(label if isinstance(label, list) else [label] * n)
        if int(labels.max()) >= self.num_classes:
            raise OptionError(f"label {int(labels.max())} is out of range: this model has "
                              f"classes 0-{self.num_classes - 1}")
        return labels.to(self.device)

    def _guided_fn(self, dtype, labels, guidance: float):
        """The network as the sampler calls it: plain, or with classifier-free guidance
        (one batched call on the labelled and the unlabelled copy: about twice the cost)."""
        if labels is None:
            return lambda xt, t: self.model_output(xt.to(dtype), t).float()
        if guidance == 1.0:
            return lambda xt, t: self.model_output(xt.to(dtype), t, labels).float()
        null = torch.full_like(labels, self.num_classes)

        def guided(xt, t):
            both = self.model_output(torch.cat([xt, xt]).to(dtype), torch.cat([t, t]),
                                     torch.cat([labels, null])).float()
            cond, uncond = both.chunk(2)
            return uncond + guidance * (cond - uncond)
        return guided

    def _model_space(self, images: torch.Tensor | None) -> torch.Tensor | None:
        """Images in [0, 1] as the model's [-1, 1] latents on its device."""
        if images is None:
            return None
        if tuple(images.shape[1:]) != self.image_shape:
            raise OptionError(f"init/mask images are {tuple(images.shape[1:])}, the model makes "
                              f"{self.image_shape}")
        return images.to(self.device, torch.float32) * 2 - 1

    def _sampling_layout(self, batch: int | None = None) -> torch.memory_format:
        """The memory format to sample a batch of ``batch`` in, with the network converted to
        it (once).

        Channels-last makes cuDNN's convolutions faster, and oneDNN's on some CPUs but not all,
        so on a CPU in fp32 it is used only where it measured faster than the default layout
        on that CPU at this network and batch shape (``genzoo.levers``: timed once, cached;
        ``GENZOO_LEVERS`` overrides). Under bf16/fp16 autocast on a CPU, autocast runs
        GroupNorm in fp32 on channels-last activations, a slow path: the default layout is
        used (house UNet 41 against 33 samples/s, diffusers' UNet2DModel 69 against 98 ms a
        batch of 64, both on an AMD EPYC), and a precision measured slower than fp32 on this
        CPU gets one warning line (the user's choice stands)."""
        import json
        import zlib

        from genzoo import levers

        on_cpu = self.device.type == "cpu"
        cpu_autocast = on_cpu and self.autocast_dtype is not None
        # the measured batch is capped: the cost of a decision stays bounded (cached anyway)
        n = min(int(batch or self.sample_defaults.get("batch_size", 32)), 32)
        net = zlib.crc32(json.dumps([self.arch, self.image_shape, self.config.get("unet"),
                                     self.config.get("diffusers_unet")], sort_keys=True,
                                    default=str).encode())
        key = f"{self.arch}/{net:08x}/batch{n}"
        x = torch.randn((n, *self.image_shape), generator=torch.Generator().manual_seed(0))
        t = torch.full((n,), self.schedule.num_train_timesteps // 2, dtype=torch.long)
        x, t = x.to(self.device), t.to(self.device)

        def run(layout: torch.memory_format, dtype: torch.dtype | None):
            def forward() -> None:
                self._layout = None  # timing moves the network between layouts
                self._to_layout(layout)
                with torch.autocast("cpu", dtype=dtype or torch.bfloat16,
                                    enabled=dtype is not None):
                    self.model_output(x.contiguous(memory_format=layout), t)
            return forward

        layout = torch.contiguous_format
        if self.channels_last and not on_cpu:
            layout = torch.channels_last
        elif self.channels_last and levers.use_lever(
                f"{key}/channels-last/fp32", run(torch.contiguous_format, None),
                run(torch.channels_last, None)):
            layout = torch.channels_last
        if cpu_autocast and self.autocast_dtype is not None:
            name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast_dtype,
                                                                       str(self.autocast_dtype))
            levers.warn_if_slower(f"{key}/{name}-vs-fp32", name, run(layout, None),
                                  run(torch.contiguous_format, self.autocast_dtype))
            layout = torch.contiguous_format
        if getattr(self, "_layout", torch.contiguous_format) != layout:
            self._to_layout(layout)
            self._layout = layout
        return layout

    def _to_layout(self, layout: torch.memory_format) -> None:
        """Convert the network's weights to ``layout`` as ordinary tensors, also when called
        while sampling under inference mode: inference tensors could not be trained, and a
        model may be finetuned after it sampled (or sample during finetuning)."""
        with torch.inference_mode(False):
            self.unet.to(memory_format=layout)

    # ---- training ------------------------------------------------------------------------
    def prepare_data(self, data: Any):
        """Images, with their class labels when the model takes labels (-1, "no label", for
        data without them: finetuning on unlabelled images trains the unconditional path)."""
        from genzoo.data import LabelledImages
        images = super().prepare_data(data)
        if not self.num_classes:  # say so rather than drop the data's labels silently
            return images.without_labels(f"this unconditional {self.arch} model")
        labelled = LabelledImages.of(images, self.num_classes)
        frequencies = labelled.class_frequencies(self.num_classes)
        if frequencies is not None:  # the class prior unlabelled sampling draws from
            self.config["class_prior"] = [round(float(f), 6) for f in frequencies]
        return labelled

    def training_loss(self, batch) -> torch.Tensor:
        """Min-SNR-weighted MSE on the schedule's target at uniformly drawn timesteps; a
        class-conditional model sees "no label" for unlabelled images and, with probability
        ``label_dropout``, for labelled ones."""
        images, label = batch if self.num_classes else (batch, None)
        x0 = images * 2 - 1
        n = x0.shape[0]
        if label is not None:
            drop = torch.rand(n, device=x0.device) < float(self.config.get("label_dropout", 0.1))
            label = torch.where(drop | (label < 0), self.num_classes, label.to(x0.device))
        t = torch.randint(0, self.schedule.num_train_timesteps, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.schedule.add_noise(x0, noise, t)
        target = self.schedule.target(x0, noise, t)
        out = self.model_output(xt, t, label) if label is not None else self.model_output(xt, t)
        err = (out.float() - target).pow(2).mean(dim=(1, 2, 3))
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
