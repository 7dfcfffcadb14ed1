"""genzoo-vae: the variational autoencoder family plugin.

This module is what the ``genzoo`` entry point loads, so it stays torch-free: architectures
are named by import string and imported on first ``genzoo.load``, and recognising a diffusers
AutoencoderKL folder reads only its parsed config.json.
"""
from __future__ import annotations

from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    """The native convolutional VAE and diffusers' AutoencoderKL (Stable Diffusion's VAE)."""
    return [
        {"name": "vae-conv", "family": "vae", "target": "genzoo_vae.model:ConvVAE",
         "summary": "convolutional VAE, Gaussian latent, Bernoulli decoder; ELBO and IW-NLL"},
        {"name": "diffusers-autoencoderkl", "family": "vae",
         "target": "genzoo_vae.autoencoder_kl:AutoencoderKLModel",
         "summary": "diffusers AutoencoderKL folders (Stable Diffusion VAEs): reconstructs "
                    "--init images; PSNR (needs genzoo-vae[diffusers])"},
    ]


@genzoo.hookimpl
def genzoo_detect_arch(config, filenames):
    """Claim a diffusers AutoencoderKL folder (config.json ``"_class_name": "AutoencoderKL"``:
    a Stable Diffusion pipeline's vae/ folder, or a repository such as sd-vae-ft-mse)."""
    if isinstance(config, dict) and config.get("_class_name") == "AutoencoderKL":
        return "diffusers-autoencoderkl"
    return None


@genzoo.hookimpl
def genzoo_model_cards():
    """The vae-mnist card and its sha256 digests, in the catalog file beside its weights
    (exactly as a third-party plugin ships its cards)."""
    return [Path(__file__).parent / "weights" / "cards.yaml"]
