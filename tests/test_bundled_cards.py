"""Every bundled model's README.md is a huggingface_hub model card whose model-index holds
the figures its catalog card records (both written by genzoo eval --write-card and
recipes/refresh_cards.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import genzoo
from genzoo.modelcard import split_metrics

BUNDLED = ("diffusion-mnist", "vae-mnist", "gan-mnist", "textlm-shakespeare")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_card_has_model_index_matching_the_catalog(name):
    info = genzoo.model_info(name)
    data = ModelCard.load(Path(info["path"]) / "README.md").data
    assert data.library_name == "genzoo" and data.license == info["license"]
    results = {r.metric_type: r.metric_value for r in data.eval_results or []}
    figures, _ = split_metrics(info["metrics"], [o["name"] for o in info["options"]])
    assert results and results == figures
