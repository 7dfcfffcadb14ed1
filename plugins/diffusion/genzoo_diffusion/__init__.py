"""genzoo-diffusion: the diffusion family plugin.

This module is what the ``genzoo`` entry point loads, so it stays torch-free: architectures
are named by import string and imported on first ``genzoo.load``.
"""
from __future__ import annotations

from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    """The native UNet diffusion model, diffusers-format UNets, text-to-image and text-to-audio
    pipelines."""
    return [
        {"name": "diffusion-unet", "family": "diffusion",
         "target": "genzoo_diffusion.model:DiffusionModel",
         "summary": "compact native UNet, v-prediction, DDPM/DDIM/DPM-Solver++/Euler samplers"},
        {"name": "diffusers-unet", "family": "diffusion",
         "target": "genzoo_diffusion.diffusers_format:DiffusersUNetModel",
         "summary": "diffusers UNet2DModel folders and pipelines (needs genzoo-diffusion[diffusers])"},
        {"name": "diffusers-text2image", "family": "diffusion",
         "target": "genzoo_diffusion.text2image:TextToImageModel",
         "summary": "Stable Diffusion 1.x/2.x and SDXL pipeline folders: text-to-image, "
                    "image-to-image, inpainting (needs genzoo-diffusion[text2image])"},
        {"name": "diffusers-text2audio", "family": "diffusion",
         "target": "genzoo_diffusion.text2audio:TextToAudioModel",
         "summary": "AudioLDM pipeline folders: text-to-audio, sampled by genzoo's samplers "
                    "(needs genzoo-diffusion[text2audio])"},
        {"name": "diffusers-lora", "family": "diffusion",
         "target": "genzoo_diffusion.diffusers_lora:DiffusersLoraFolder",
         "summary": "diffusers LoRA folders (pytorch_lora_weights.safetensors): the "
                    "text-to-image base their README names, with the LoRA applied"},
    ]


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    """Claim diffusers-format folders (UNet2DModel configs, DDPM-style, text-to-image and
    AudioLDM pipelines, LoRA folders)."""
    from .detect import detect_arch
    return detect_arch(config, filenames)


@genzoo.hookimpl
def genzoo_model_cards():
    """The diffusion-mnist card and its sha256 digests, in the catalog file beside its weights
    (exactly as a third-party plugin ships its cards)."""
    return [Path(__file__).parent / "weights" / "cards.yaml"]


@genzoo.hookimpl
def genzoo_select_files(filenames, read_json, dtype):
    """Choose a diffusers pipeline repository's files: model_index.json and, for each
    component it lists, its configuration files and one safetensors weight set (the fp16
    variant only when half precision is asked for); None for any other layout."""
    from .files import select_files
    return select_files(filenames, read_json, dtype)
