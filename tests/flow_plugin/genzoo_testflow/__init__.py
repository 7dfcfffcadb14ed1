"""genzoo-testflow: hooks only (no torch here); the class is named by import string."""
from pathlib import Path

import genzoo


@genzoo.hookimpl
def genzoo_architectures():
    return [{"name": "testflow-pixel", "family": "testflow",
             "target": "genzoo_testflow.model:PixelFlow",
             "summary": "independent logistic pixels: exact NLL, for contract tests"}]


@genzoo.hookimpl
def genzoo_model_cards():
    cards = Path(__file__).parent / "weights" / "cards.yaml"
    return [cards] if cards.is_file() else []
