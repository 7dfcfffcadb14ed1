"""`TextToImageModel` ("diffusers-text2image"): Stable Diffusion 1.x/2.x and SDXL pipeline
folders, sampled by genzoo's own samplers over the pipeline's UNet.

The networks (UNet2DConditionModel, AutoencoderKL, CLIP text encoders) and tokenizers are
loaded by diffusers and transformers (``pipeline_folder``); everything between them is
genzoo's: the prompt conditioning (``prompts``), and, from the latent engine it shares with
text-to-audio (``latent.LatentDiffusionModel``), the per-sample initial latents, the samplers
(DDIM, DPM-Solver++, Euler, Euler-ancestral, DDPM) and classifier-free guidance; here:
image sizes, image-to-image and both inpainting methods. Each choice follows diffusers' pipelines, which are the oracle
(``StableDiffusion{,XL,Img2Img,Inpaint}Pipeline`` with ``generator=[...]``: same images within
1e-4 in fp32). Sample i depends only on (seed, i): every random draw of sample i (its latent
noise, its init image's posterior sample, the ancestral samplers' noise) comes from its own
generator, in the order diffusers draws them.

- image-to-image: ``init`` (images in [0, 1] of the output size) and ``strength``: the last
  ``int(strength * steps)`` steps run from the init latents noised to the first of them.
- inpainting: ``mask`` (white regenerates): a 9-channel inpainting UNet takes the mask and the
  masked image's latents as extra input channels; a 4-channel UNet blends its latents with
  the init latents noised to each step's level (the "blend" method of diffusers' pipeline).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genzoo.errors import OptionError, WeightsError
from genzoo.options import Option

from . import pipeline_folder as folders
from . import text2image_train as training
from .latent import BATCH_OPTION, LatentDiffusionModel, guided_options, per_sample
from .prompts import Conditioning, PromptEncoder

#: diffusers' default classifier-free guidance scale for Stable Diffusion 1.x/2.x ...
DEFAULT_GUIDANCE = 7.5
#: ... and for SDXL (two text encoders), whose pipeline defaults to 5.
SDXL_GUIDANCE = 5.0


class TextToImageModel(LatentDiffusionModel):
    """A latent text-to-image diffusion pipeline (SD 1.x/2.x, SDXL) in genzoo."""

    arch = "diffusers-text2image"
    modality = "image"
    networks = folders.NETWORKS
    tokenizers = folders.TOKENIZERS
    required = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    pipeline_kind = "text-to-image"
    pipeline_class = "StableDiffusionPipeline"
    # a 512x512 SD sample holds a few GB of activations on a CPU: small batches bound memory
    sample_defaults = {"sampler": "dpmsolver++", "steps": 25, "eta": 0.0, "batch_size": 4,
                       "guidance": DEFAULT_GUIDANCE}
    sample_options = (
        *guided_options("what to draw", "the pipeline's default", DEFAULT_GUIDANCE,
                        "dpmsolver++", 25),
        Option("height", "int", None, "image height in pixels, a multiple of the latent "
               "factor (default: the model's size)", min=8, max=4096),
        Option("width", "int", None, "image width in pixels, a multiple of the latent factor "
               "(default: the model's size)", min=8, max=4096),
        Option("init", "image", None, "start from this picture (image-to-image, or the "
               "picture a mask completes)", condition=True, per_sample=True),
        Option("strength", "float", None, "with init: how far to move from it (0-1]; "
               "default 0.8 for image-to-image, 1 for inpainting", min=0.0, max=1.0),
        Option("mask", "image", None, "with init: white regenerates, black keeps "
               "(inpainting)", condition=True, per_sample=True),
        BATCH_OPTION,
    )

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        if "text_encoder_2" in config.get("components", {}):
            self.sample_defaults = {**self.sample_defaults, "guidance": SDXL_GUIDANCE}

    def check_pipeline(self, folder: Path) -> None:
        """Refuse UNets the samplers cannot drive, in one line."""
        super().check_pipeline(folder)
        cfg = self.unet.config
        if cfg.out_channels != 4 and cfg.out_channels != self.vae.config.latent_channels:
            raise WeightsError(f"{folder}/unet: out_channels {cfg.out_channels} differ from the "
                               "autoencoder's latent channels")

    def describe(self) -> None:
        """The output shape: 3 channels at the UNet's trained size."""
        self.config["image_shape"] = [3, *self.default_size()]

    # ---- shapes ------------------------------------------------------------------------
    def default_size(self) -> tuple[int, int]:
        """(height, width) the UNet was trained at: its sample size times the latent factor."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        return h * self.latent_factor, w * self.latent_factor

    def _size(self, height: int | None, width: int | None, init) -> tuple[int, int]:
        """The output size asked for (or the init images', or the model's), checked."""
        default = tuple(init.shape[-2:]) if init is not None else self.default_size()
        h, w = height or default[0], width or default[1]
        f = self.latent_factor
        if h % f or w % f:
            raise OptionError(f"height and width must be multiples of {f} (the latent factor); "
                              f"got {h}x{w}")
        if init is not None and tuple(init.shape[-2:]) != (h, w):
            raise OptionError(f"init images are {init.shape[-2]}x{init.shape[-1]}, the output "
                              f"is {h}x{w}; resize them or pass matching --height/--width")
        return h, w

    # ---- sampling ----------------------------------------------------------------------
    def generate(self, generators, prompt="", negative_prompt=None, guidance=DEFAULT_GUIDANCE,
                 sampler="dpmsolver++", steps=25, eta=0.0, height=None, width=None, init=None,
                 strength=None, mask=None, progress=None):
        """Images in [0, 1] for the prompts, one per generator (see the module docstring)."""
        n = len(generators)
        if mask is not None and init is None:
            raise OptionError("mask needs init: the picture whose masked part is redrawn")
        h, w = self._size(height, width, init)
        f = self.latent_factor
        shape = (self.unet.config.out_channels, h // f, w // f)
        cond = self._conditioning(per_sample(prompt, n), per_sample(negative_prompt, n),
                                  (h, w), guidance)
        strength = (1.0 if mask is not None else 0.8) if strength is None else strength
        start = _first_step(steps, strength) if init is not None else 0
        # the init latents are drawn here, before the noise; the masked image's after it
        steer, after_noise = self._steering(generators, init, mask, shape, strength)
        latents = self.denoise(generators, shape, cond.kwargs(), guidance, sampler=sampler,
                               steps=steps, eta=eta, progress=progress, start=start,
                               steer=steer, after_noise=after_noise)
        return self.decode(latents)

    def _conditioning(self, prompts, negatives, size, guidance) -> Conditioning:
        """The prompts' conditioning, the negative one first when guidance is on."""
        encoder = PromptEncoder([t for t in (self.tokenizer, self.tokenizer_2) if t],
                                [e for e in (self.text_encoder, self.text_encoder_2) if e],
                                self.config.get("force_zeros_for_empty_prompt", True))
        cond = encoder.encode(prompts, size)
        if guidance <= 1.0:
            return cond
        return Conditioning.cat(encoder.encode(negatives, size, negative=True), cond)

    def _steering(self, generators, init, mask, shape, strength: float):
        """(the sampler's image-to-image and inpainting arguments, the draw to make after the
        noise or None): the init latents are drawn here, before the noise, and the masked
        image's after it, in diffusers' order; the second returns the inpainting UNet's extra
        input channels (None for a 4-channel UNet)."""
        if init is None:
            return {}, None
        image = init.to(self.device, torch.float32) * 2 - 1
        if mask is None:
            return {"init": self.encode(image, generators)}, None
        full = _binary_mask(mask.to(self.device), image.shape[-2:])
        small = torch.nn.functional.interpolate(full, size=shape[-2:])
        nine = self.unet.config.in_channels == 9
        out: dict[str, Any] = {}
        if not nine or strength < 1.0:
            out["init"] = self.encode(image, generators)
        masked = image * (full < 0.5)
        if not nine:  # the blend method; the sampler noises init without a keeper otherwise
            out.update(mask=small, mask_noise="initial")

        def after_noise() -> torch.Tensor | None:
            # diffusers encodes the masked image for a 4-channel UNet too: its draws count
            latents = self.encode(masked, generators)
            return torch.cat([small, latents], dim=1) if nine else None
        return out, after_noise

    def encode(self, images: torch.Tensor, generators=None) -> torch.Tensor:
        """Latents of images in [-1, 1]: a posterior sample per image, drawn from its own
        generator (the mean without generators), times the autoencoder's scaling factor."""
        return self.encode_latents(images, generators)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from latents in the UNet's space."""
        return (self.decode_latents(z) / 2 + 0.5).clamp(0, 1)

    # ---- finetuning and LoRA files (see text2image_train and diffusers_lora) -------------
    #: ``--lora-rank`` adapts the UNet's attention projections, as diffusers' LoRA script.
    lora_targets = training.LORA_TARGETS
    train_defaults = training.TRAIN_DEFAULTS

    def prepare_data(self, data: Any):
        """Image-caption pairs (a folder with a metadata.jsonl), resized to the model's size."""
        return training.prepare_data(self, data)

    def train_stages(self):
        """The UNet (or its LoRA layers) trains; the autoencoder and text encoders are frozen."""
        return training.train_stages(self)

    def training_loss(self, batch) -> torch.Tensor:
        """diffusers' text-to-image loss: MSE to the noise (or velocity) on noised latents."""
        return training.training_loss(self, batch)

    def train(self, mode: bool = True) -> "TextToImageModel":
        """Train mode for the UNet only: the frozen components stay in eval mode."""
        super().train(mode)
        training.keep_frozen_in_eval(self)
        return self

    def load_lora(self, path, scale: float = 1.0) -> Path:
        """Apply a diffusers-format LoRA file (or a folder holding
        pytorch_lora_weights.safetensors) at ``scale``, as ``pipe.load_lora_weights`` does."""
        from .diffusers_lora import load_lora
        return load_lora(self, path, scale)

    def save_lora(self, folder) -> Path:
        """Write this model's LoRA adapter as diffusers' pytorch_lora_weights.safetensors."""
        from .diffusers_lora import save_lora
        return save_lora(self, folder)


def _first_step(steps: int, strength: float) -> int:
    """diffusers' image-to-image start: the last ``int(strength * steps)`` steps run."""
    if not 0.0 < float(strength) <= 1.0:
        raise OptionError(f"strength must be in (0, 1], got {strength!r}")
    run = min(int(steps * float(strength)), steps)
    if run < 1:
        raise OptionError(f"strength {strength} with {steps} steps runs no step; raise either")
    return steps - run


def _binary_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """(N, 1, H, W) of 0/1: the mask's mean over channels, thresholded at 0.5 as diffusers'
    mask processor binarizes it."""
    if tuple(mask.shape[-2:]) != tuple(size):
        raise OptionError(f"the mask is {mask.shape[-2]}x{mask.shape[-1]}, the init images "
                          f"{size[0]}x{size[1]}; give them the same size")
    gray = mask.float().mean(dim=1, keepdim=True)
    return (gray >= 0.5).float()
