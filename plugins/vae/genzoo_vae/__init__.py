"""genzoo-vae: the variational autoencoder family plugin.

This module is what the ``genzoo`` entry point loads, so it stays torch-free: the architecture
is named by import string and imported on first ``genzoo.load``.
"""
from __future__ import annotations

from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    """The native convolutional VAE."""
    return [
        {"name": "vae-conv", "family": "vae", "target": "genzoo_vae.model:ConvVAE",
         "summary": "convolutional VAE, Gaussian latent, Bernoulli decoder; ELBO and IW-NLL"},
    ]


@genzoo.hookimpl
def genzoo_model_cards():
    """The vae-mnist card and its sha256 digests, in the catalog file beside its weights
    (exactly as a third-party plugin ships its cards)."""
    return [Path(__file__).parent / "weights" / "cards.yaml"]
