"""A diffusion model finetunes on the labels in the user's data (here a Hugging Face
imagefolder metadata.jsonl); an unconditional one says once that it ignores them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo_diffusion.model import DiffusionModel

CONFIG = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}


@pytest.fixture
def labelled() -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel({**CONFIG, "num_classes": 3}).to_device("cpu", "fp32")


def test_metadata_jsonl_labels_train_a_conditional_model(labelled, tmp_path, caplog):
    for i in range(4):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": f"{i}.png", "label": k}) + "\n" for i, k in enumerate([1, 1, 2, 1])))
    data = labelled.prepare_data(tmp_path)  # Hugging Face imagefolder layout
    assert data[torch.arange(4)][1].tolist() == [1, 1, 2, 1]
    assert labelled.config["class_prior"] == [0.0, 0.75, 0.25]
    with caplog.at_level("WARNING", logger="genzoo"):
        DiffusionModel(CONFIG).prepare_data(tmp_path)
    assert sum("ignores them" in r.getMessage() for r in caplog.records) == 1, \
        [r.getMessage() for r in caplog.records]  # said once (other loggers may speak too)
