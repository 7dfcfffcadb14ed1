"""Recognise diffusers-format folders (torch-free: the plugin's hook calls this on every load
of a folder without a ``genzoo`` section, so it must stay as cheap as reading a file list).

A text-to-image pipeline folder (``model_index.json`` with ``unet/``, ``vae/`` and
``text_encoder/`` components: Stable Diffusion 1.x/2.x, SDXL) is claimed for
"diffusers-text2image"; an AudioLDM pipeline folder (the same with a ``vocoder/``, and no
component beyond AudioLDM's) for "diffusers-text2audio". Two layouts are claimed for the
"diffusers-unet" architecture:

- a UNet folder: ``config.json`` with ``"_class_name": "UNet2DModel"`` (the flat layout of
  the early ``google/ddpm-*`` repositories, a pipeline's ``unet/`` subfolder, or a bare
  ``UNet2DModel.save_pretrained`` folder);
- an unconditional pipeline folder: ``model_index.json`` with ``unet/`` and, at most,
  ``scheduler/`` as components (a text-to-image pipeline, with a VAE or text encoder, is not).

A diffusers LoRA folder (``pytorch_lora_weights.safetensors``, or only its pickle ``.bin``,
which loading then refuses in one line, at the top and no ``model_index.json``) is claimed for
"diffusers-lora": its README.md names the base pipeline the file is applied to.
"""
from __future__ import annotations

from typing import Any, Iterable

ARCH = "diffusers-unet"
TEXT2IMAGE = "diffusers-text2image"
TEXT2AUDIO = "diffusers-text2audio"
LORA = "diffusers-lora"
#: What ``pipe.save_lora_weights`` writes (safetensors, or pickle with safe_serialization=False).
_LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
#: The components that make a folder a latent text-to-image pipeline.
_TEXT2IMAGE_PARTS = {"unet", "vae", "text_encoder"}
#: AudioLDM's components: a vocoder makes the pipeline text-to-audio; AudioLDM 2 and MusicLDM,
#: which add others (a language model, a feature extractor), are not claimed.
_TEXT2AUDIO_PARTS = {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "vocoder"}
UNET_CLASSES = ("UNet2DModel",)
#: Files that mark a top-level subfolder as a pipeline component.
_COMPONENT_FILES = ("config.json", "scheduler_config.json", "tokenizer_config.json",
                    "preprocessor_config.json")
_PIPELINE_PARTS = {"unet", "scheduler"}


def detect_arch(config: dict[str, Any], filenames: Iterable[str]) -> str | None:
    """``"diffusers-unet"`` when ``config`` (the parsed root config.json, or {}) and the
    relative ``filenames`` of a folder form a diffusers UNet or unconditional pipeline,
    ``"diffusers-text2image"`` for a text-to-image pipeline, ``"diffusers-text2audio"`` for
    an AudioLDM pipeline, ``"diffusers-lora"`` for a diffusers LoRA folder."""
    if isinstance(config, dict) and config.get("_class_name") in UNET_CLASSES:
        return ARCH
    files = {str(f).replace("\\", "/") for f in filenames}
    if "model_index.json" not in files and any(f in files for f in _LORA_FILES):
        return LORA
    if "model_index.json" not in files or "unet/config.json" not in files:
        return None
    components = {f.split("/", 1)[0] for f in files
                  if f.count("/") == 1 and f.rsplit("/", 1)[1] in _COMPONENT_FILES}
    if components <= _PIPELINE_PARTS:
        return ARCH
    if "vocoder" in components:
        return TEXT2AUDIO if _TEXT2IMAGE_PARTS <= components <= _TEXT2AUDIO_PARTS else None
    return TEXT2IMAGE if _TEXT2IMAGE_PARTS <= components else None
