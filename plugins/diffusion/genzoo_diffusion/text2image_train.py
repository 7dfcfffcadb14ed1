"""Finetuning a text-to-image pipeline (``TextToImageModel``) on image-caption pairs, as
diffusers' ``train_text_to_image.py`` and ``train_text_to_image_lora.py`` do.

- Data: images with captions (``genzoo.data.CaptionedImages``): a folder of images and a
  Hugging Face ``metadata.jsonl`` (``{"file_name": "a.png", "text": "a caption"}`` per line),
  each image resized to the model's size (``config["image_shape"]``).
- Loss: the latents are a posterior sample of the autoencoder times its scaling factor; a
  timestep per image, uniform over the training schedule; the latents noised by the
  schedule's ``add_noise``; the target is the noise (epsilon) or the velocity (v-prediction),
  as the scheduler's ``prediction_type`` says; the loss is the MSE of the UNet's output, given
  the captions' text conditioning (``prompts.PromptEncoder``, exactly what sampling uses).
- What trains: the UNet. The autoencoder and text encoders are frozen (and kept in eval
  mode), as in diffusers' scripts. With ``--lora-rank`` only peft's LoRA layers train; by
  default they go on the UNet's attention projections (``to_q``, ``to_k``, ``to_v``,
  ``to_out.0``), the targets diffusers' LoRA script picks (``LORA_TARGETS``).

Every random draw (posterior samples, timesteps, noise) comes from torch's global generator,
which the finetune engine seeds per run and rank, so a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from genzoo.model import TrainStage

from .prompts import PromptEncoder

if TYPE_CHECKING:
    from .text2image import TextToImageModel

#: peft's target_modules (a regex it full-matches against module names): the UNet's
#: attention projections, as ``train_text_to_image_lora.py`` adapts them; the autoencoder's
#: attention (named alike) and the text encoders are left alone.
LORA_TARGETS = r"unet\..*\.(to_q|to_k|to_v|to_out\.0)"
#: The components that never train (their own LoRA layers, if asked for, excepted).
FROZEN = ("vae", "text_encoder", "text_encoder_2")
#: diffusers' LoRA script defaults (learning rate 1e-4, AdamW betas (0.9, 0.999), weight decay
#: 1e-2); a small batch, since a 512x512 batch holds GBs of activations. A full finetune of a
#: loaded pipeline takes a tenth of the rate (1e-5), as the engine does for every family.
TRAIN_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "batch_size": 4, "weight_decay": 1e-2,
                                  "betas": (0.9, 0.999)}


def prepare_data(model: TextToImageModel, data: Any):
    """Image-caption pairs from ``data`` (a folder with a metadata.jsonl), the images resized to
    the model's size; data without captions is a one-line DataError."""
    from genzoo.data import CaptionedImages, load_image_dataset
    images = load_image_dataset(data, shape=tuple(model.config["image_shape"]))
    return CaptionedImages.of(images, f"{model.name_or_path or model.arch} (text-to-image)")


def freeze(model: TextToImageModel) -> None:
    """Stop gradients to the autoencoder and text encoders (LoRA layers in them excepted)."""
    for name in FROZEN:
        part = getattr(model, name, None)
        if part is None:
            continue
        for param_name, p in part.named_parameters():
            if "lora_" not in param_name:
                p.requires_grad_(False)


def train_stages(model: TextToImageModel) -> dict[str, TrainStage]:
    """One stage: every parameter that still trains once the frozen components are frozen
    (the UNet's, or only the LoRA layers' under an adapter)."""
    freeze(model)
    return {"model": TrainStage([p for p in model.parameters() if p.requires_grad],
                                model.training_loss)}


def keep_frozen_in_eval(model: TextToImageModel) -> None:
    """The frozen components back in eval mode after ``model.train()`` (diffusers' scripts
    put only the UNet in train mode)."""
    for name in FROZEN:
        part = getattr(model, name, None)
        if part is not None:
            part.eval()


def training_loss(model: TextToImageModel, batch) -> torch.Tensor:
    """The MSE between the UNet's output on noised latents of the images and the schedule's
    target, conditioned on the captions (see the module docstring)."""
    images, captions = batch
    captions = [captions] if isinstance(captions, str) else list(captions)
    with torch.no_grad():
        x = images.to(model.device, torch.float32) * 2 - 1
        posterior = model.vae.encode(x.to(model._vae_dtype())).latent_dist
        latents = model._to_model_space(posterior.sample().float())
    encoders = [e for e in (model.text_encoder, model.text_encoder_2) if e is not None]
    tokenizers = [t for t in (model.tokenizer, model.tokenizer_2) if t is not None]
    encoder = PromptEncoder(tokenizers, encoders,
                            model.config.get("force_zeros_for_empty_prompt", True))
    text_trains = any(p.requires_grad for e in encoders for p in e.parameters())
    with torch.set_grad_enabled(text_trains and torch.is_grad_enabled()):
        cond = encoder.encode(captions, tuple(images.shape[-2:]))
    n = latents.shape[0]
    noise = torch.randn_like(latents)
    t = torch.randint(0, model.schedule.num_train_timesteps, (n,), device=latents.device)
    noisy = model.schedule.add_noise(latents, noise, t)
    target = model.schedule.target(latents, noise, t)
    out = model.unet(noisy, t, **cond.kwargs(), return_dict=False)[0]
    return torch.nn.functional.mse_loss(out.float(), target.float())
