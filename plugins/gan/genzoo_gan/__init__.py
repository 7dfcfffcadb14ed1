"""genzoo-gan: the generative adversarial network family plugin.

This module is what the ``genzoo`` entry point loads, so it stays torch-free: the architecture
is named by import string and imported on first ``genzoo.load``.
"""
from __future__ import annotations

from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    """The native DCGAN."""
    return [
        {"name": "gan-dcgan", "family": "gan", "target": "genzoo_gan.model:DCGAN",
         "summary": "DCGAN generator + spectral-norm discriminator, hinge loss, EMA generator"},
    ]


@genzoo.hookimpl
def genzoo_model_cards():
    """The gan-mnist card and its sha256 digests, in the catalog file beside its weights
    (exactly as a third-party plugin ships its cards)."""
    return [Path(__file__).parent / "weights" / "cards.yaml"]
