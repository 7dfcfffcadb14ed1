"""Rewrite the bundled models' folders from their cards, weights unchanged: README.md (with the
card's metrics as model-index eval results), config.json (as the family writes it today) and
the digests, size and capabilities in the plugin's cards.yaml.

    python recipes/refresh_cards.py                       # every first-party bundled model
    python recipes/refresh_cards.py vae-mnist gan-mnist   # some of them

Run it after ``benchmarks/card_metrics.py`` has written fresh metrics into the cards.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bundle import bundle_model  # recipes/ is on sys.path when this file runs

MODELS = ("diffusion-mnist", "vae-mnist", "gan-mnist", "textlm-shakespeare")


def refresh(name: str) -> None:
    """Re-save ``name`` into its own weights folder (fp16 as bundled) and update its card."""
    import genzoo
    from genzoo.catalog.registry import get_registry
    card = get_registry().get(name)
    folder = Path(genzoo.model_info(name, options=False)["path"])
    model = genzoo.load(name, device="cpu", dtype="fp32")
    bundle_model(model, name, folder, metrics=dict(card.metrics))  # the same network's figures


if __name__ == "__main__":
    for model_name in sys.argv[1:] or MODELS:
        refresh(model_name)
