"""`LatentDiffusionModel`: the latent diffusion engine that text-to-image (Stable Diffusion,
SDXL) and text-to-audio (AudioLDM) pipelines share; each is a thin subclass that says what its
components are, how prompts condition its UNet and what its latents decode to.

What is shared, once:

- loading a diffusers pipeline folder (``model_index.json`` and one subfolder per component,
  through ``pipeline_folder``, with the subclass's table of accepted classes) and genzoo's own
  saved format (config.json records each network's class and config, model.safetensors holds
  every network, the tokenizers keep transformers' files beside them);
- the denoising: per-sample initial latents (row i from generator i, on the CPU, as diffusers'
  ``randn_tensor`` draws them for a generator list), the UNet under classifier-free guidance
  (one call on the doubled batch, unconditional half first, as diffusers), genzoo's samplers
  (``samplers.sample``: DDIM, DPM-Solver++, Euler, Euler-ancestral, DDPM) over the pipeline's
  noise schedule;
- the autoencoder's latent space: the scaling (and shift, or per-channel mean and std) that maps
  autoencoder latents to the UNet's, posterior sampling, decoding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from genzoo.errors import WeightsError
from genzoo.model import GenerativeModel, read_config
from genzoo.options import Option
from genzoo.seeding import per_sample_randn

from . import pipeline_folder as folders
from .diffusers_format import default_sampler
from .samplers import SAMPLERS, sample as run_sampler
from .schedule import NoiseSchedule


class LatentDiffusionModel(GenerativeModel):
    """A diffusers latent diffusion pipeline (UNet2DConditionModel over AutoencoderKL latents)
    sampled by genzoo's samplers. Subclasses set the tables below and ``generate``."""

    family = "diffusion"
    #: component -> (library, classes accepted): the networks this pipeline holds.
    networks: ClassVar[folders.Networks] = {}
    #: The tokenizer components and their kind ("CLIP", "Roberta").
    tokenizers: ClassVar[tuple[str, ...]] = ()
    tokenizer_kind: ClassVar[str] = "CLIP"
    #: The components a folder must name, and what the pipeline is called in messages.
    required: ClassVar[tuple[str, ...]] = ("unet", "vae", "scheduler")
    pipeline_kind: ClassVar[str] = "latent diffusion"
    #: The diffusers pipeline class a model_index.json without ``_class_name`` stands for.
    pipeline_class: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.schedule = NoiseSchedule(config["scheduler"])
        for name in (*self.networks, *self.tokenizers):
            setattr(self, name, None)
        sampler = config.get("default_sampler")
        if sampler is not None:
            self.sample_defaults = {**self.sample_defaults, "sampler": sampler}

    # ---- loading and saving ------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, device="auto", dtype="auto") -> "LatentDiffusionModel":
        """Load a diffusers pipeline folder, or a genzoo-saved one (genzoo's format:
        config.json, model.safetensors, README.md, tokenizer folders)."""
        folder = Path(folder)
        if "genzoo" in read_config(folder, required=False):
            return super().from_pretrained(folder, device=device, dtype=dtype)
        index = folders.read_json(folder / folders.MODEL_INDEX)
        parts = folders.components(index)
        for need in cls.required:
            if need not in parts:
                raise WeightsError(f"{folder}: model_index.json names no {need}; a "
                                   f"{cls.pipeline_kind} pipeline needs "
                                   f"{', '.join(cls.required)}")
        scheduler = folders.read_json(folder / "scheduler" / folders.SCHEDULER_CONFIG)
        model = cls(pipeline_config(index, parts, scheduler, cls.pipeline_class))
        for name, cls_name in parts.items():
            if name in cls.networks:
                setattr(model, name, folders.load_network(folder, name, cls_name, cls.networks))
            elif name in cls.tokenizers:
                setattr(model, name, folders.load_tokenizer(folder, name, cls.tokenizer_kind))
        model.check_pipeline(folder)
        model.config["networks"] = {
            name: folders.network_spec(name, getattr(model, name), cls.networks)
            for name in cls.networks if getattr(model, name) is not None}
        model.describe()
        model.name_or_path = str(folder)
        model.origin = {"folder": str(folder)}
        model.pretrained = True
        return model.to_device(device, dtype).eval()

    def check_pipeline(self, folder: Path) -> None:
        """Refuse, in one line, a pipeline the samplers cannot drive (subclasses add theirs)."""
        if self.unet.config.get("time_cond_proj_dim") is not None:
            raise WeightsError(f"{folder}/unet: a guidance-distilled UNet (time_cond_proj_dim, "
                               "LCM-style) is not supported")

    def describe(self) -> None:
        """Record in ``config`` what the loaded networks imply (an output shape, a rate)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LatentDiffusionModel":
        """Networks rebuilt from the saved config (weights are read next); tokenizers are
        read by ``load_extra_files``."""
        model = cls(config)
        for name, spec in (config.get("networks") or {}).items():
            if name not in cls.networks:
                raise WeightsError(f"config.json: unknown network {name!r}")
            setattr(model, name, folders.build_network(name, spec, cls.networks))
        return model

    def save_extra_files(self, folder: Path) -> None:
        """The tokenizers, in transformers' format (model.safetensors holds every network)."""
        for name in self.tokenizers:
            tokenizer = getattr(self, name)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(folder / name))

    def load_extra_files(self, folder: Path) -> None:
        """The tokenizers a saved model keeps beside its weights."""
        for name in self.tokenizers:
            if (folder / name).is_dir():
                setattr(self, name, folders.load_tokenizer(folder, name, self.tokenizer_kind))

    # ---- denoising ---------------------------------------------------------------------
    @property
    def latent_factor(self) -> int:
        """Output cells per latent cell along each axis: 2 ** (autoencoder blocks - 1)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def denoise(self, generators, shape: tuple[int, ...], unet_kwargs: dict[str, Any],
                guidance: float, *, sampler: str, steps: int, eta: float = 0.0,
                progress: Callable[[int, int], None] | None = None, start: int = 0,
                steer: dict[str, Any] | None = None,
                after_noise: Callable[[], torch.Tensor | None] | None = None) -> torch.Tensor:
        """Latents (n, *shape) denoised from per-sample noise by ``sampler``. ``unet_kwargs``
        (the conditioning, unconditional half first when ``guidance`` > 1), ``steer`` (the
        sampler's image-to-image and inpainting arguments) and ``after_noise`` (a draw made
        after the noise, as diffusers orders them, returning extra UNet input channels or None)
        are the caller's."""
        x_T = per_sample_randn(generators, shape, device=self.device, dtype=torch.float32)
        extra = after_noise() if after_noise is not None else None
        fn = self.guided_unet(unet_kwargs, guidance, extra)
        return run_sampler(fn, x_T, self.schedule, sampler=sampler, steps=steps,
                           generators=generators, eta=eta, progress=progress, start=start,
                           **(steer or {}))

    def guided_unet(self, unet_kwargs: dict[str, Any], guidance: float,
                    extra: torch.Tensor | None = None):
        """The UNet as the sampler calls it, with classifier-free guidance (one call on the
        doubled batch, unconditional half first, as diffusers); ``extra``: input channels
        concatenated to the latents (an inpainting UNet's mask and masked image)."""
        dtype = self.autocast_dtype or torch.float32
        guided = guidance > 1.0

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guided:
                x, t = torch.cat([x, x]), torch.cat([t, t])
            if extra is not None:
                x = torch.cat([x, torch.cat([extra, extra]) if guided else extra], dim=1)
            out = self.unet(x.to(dtype), t, **unet_kwargs, return_dict=False)[0].float()
            if not guided:
                return out
            uncond, cond = out.chunk(2)
            return uncond + guidance * (cond - uncond)
        return fn

    # ---- the autoencoder's latent space ------------------------------------------------
    def encode_latents(self, x: torch.Tensor, generators=None) -> torch.Tensor:
        """Latents of autoencoder inputs ``x``: a posterior sample per row, drawn from its own
        generator (the mean without generators), mapped into the UNet's space."""
        latents = []
        for i in range(x.shape[0]):  # one by one, as diffusers does with a generator list
            dist = self.vae.encode(x[i:i + 1].to(self._vae_dtype())).latent_dist
            z = dist.mean if generators is None else posterior_sample(dist, generators[i])
            latents.append(z.float())
        return self._to_model_space(torch.cat(latents))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """The autoencoder's output (float32) for latents in the UNet's space."""
        shift, scale = self._latent_map(z)
        z = z / scale + shift
        return self.vae.decode(z.to(self._vae_dtype()), return_dict=False)[0].float()

    def _to_model_space(self, z: torch.Tensor) -> torch.Tensor:
        """Autoencoder latents scaled (and shifted) into the space the UNet was trained on."""
        shift, scale = self._latent_map(z)
        return (z - shift) * scale

    def _latent_map(self, like: torch.Tensor):
        """(shift, scale) with UNet latents = (autoencoder latents - shift) * scale: per
        channel from ``latents_mean``/``latents_std`` where the autoencoder records them,
        else its shift and scaling factors."""
        cfg = self.vae.config
        mean, std = cfg.get("latents_mean"), cfg.get("latents_std")
        if mean is not None and std is not None:
            return (torch.tensor(mean).view(1, -1, 1, 1).to(like),
                    cfg.scaling_factor / torch.tensor(std).view(1, -1, 1, 1).to(like))
        return cfg.get("shift_factor") or 0.0, cfg.scaling_factor

    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype


def pipeline_config(index: dict[str, Any], parts: dict[str, str], scheduler: dict[str, Any],
                    pipeline_class: str = "") -> dict[str, Any]:
    """The model config: the pipeline's class (``pipeline_class`` when the index names none),
    components and scheduler (the schedule), the default sampler its scheduler class picks."""
    return {"pipeline": index.get("_class_name", pipeline_class),
            "components": parts,
            "force_zeros_for_empty_prompt": index.get("force_zeros_for_empty_prompt", True),
            "scheduler": {k: v for k, v in scheduler.items() if k != "_diffusers_version"},
            "default_sampler": default_sampler(scheduler)}


def per_sample(value, n: int) -> list:
    """One value per sample from a value for all or a list of n."""
    return list(value) if isinstance(value, list) else [value] * n


def posterior_sample(dist, generator: torch.Generator) -> torch.Tensor:
    """A sample of a diagonal Gaussian posterior with noise from ``generator`` (on the CPU,
    as diffusers' ``randn_tensor`` draws it for a CPU generator)."""
    noise = torch.randn(dist.mean.shape, generator=generator).to(dist.mean)
    return dist.mean + dist.std * noise


def guided_options(subject: str, negative_default: str, guidance: float, sampler: str,
                   steps: int) -> tuple[Option, ...]:
    """The sampling options every prompt-guided latent pipeline declares — ``prompt`` (one,
    or one per sample), ``negative_prompt``, ``guidance``, ``sampler``, ``steps``, ``eta`` —
    with the pipeline's defaults; ``subject`` says what a prompt asks for ("what to draw")."""
    return (
        Option("prompt", "str", "", f"{subject} (repeat --prompt for one per sample)",
               condition=True, per_sample=True),
        Option("negative_prompt", "str", None, "what to steer away from (none: "
               f"{negative_default})", condition=True, per_sample=True),
        Option("guidance", "float", guidance, "classifier-free guidance scale (1: none; more: "
               "closer to the prompt, less varied)", min=0.0, max=50.0),
        Option("sampler", "str", sampler, "the reverse-process solver", choices=SAMPLERS),
        Option("steps", "int", steps, "denoising steps (more: slower, closer to the model)",
               min=1, max=1000),
        Option("eta", "float", 0.0, "DDIM noise: 0 deterministic, 1 DDPM-like", min=0.0,
               max=1.0),
    )


#: The batch size option: memory, not output (a sample depends only on (seed, i)).
BATCH_OPTION = Option("batch_size", "int", 4, "samples per network batch", min=1,
                      affects_output=False)
