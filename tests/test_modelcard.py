"""Model folders' README.md speak huggingface_hub's card format: measured figures are
``model-index`` eval results, and license, base_model and datasets travel through save and
finetune."""
from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

import genzoo
from genzoo.modelcard import split_metrics


def test_figures_and_settings_are_told_apart():
    figures, settings = split_metrics(
        {"fd": 5.2, "kid": 0.1, "n": 1000, "seed": 0, "steps": 20, "sampler": "ddim",
         "train_minutes": 35.0, "reference": "mnist:ref", "flag": True}, options=["steps"])
    assert figures == {"fd": 5.2, "kid": 0.1}
    assert settings == {"n": 1000, "seed": 0, "steps": 20, "sampler": "ddim",
                        "train_minutes": 35.0, "reference": "mnist:ref", "flag": True}


def test_saved_card_carries_metrics_as_eval_results(tmp_path):
    model = genzoo.load("gan-mnist", device="cpu")
    model.save_pretrained(tmp_path / "m", card={"name": "my-gan", "license": "mit",
                                                "datasets": ["mnist"],
                                                "metrics": {"fd": 27.0, "n": 1000,
                                                            "reference": "mnist:ref",
                                                            "truncation": 1.0}})
    data = ModelCard.load(tmp_path / "m" / "README.md").data
    assert data.library_name == "genzoo" and data.license == "mit" and data.datasets == ["mnist"]
    [result] = data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_name) == \
        ("fd", 27.0, "mnist:ref")
    assert result.metric_args == {"n": 1000, "reference": "mnist:ref", "truncation": 1.0}


def test_finetuned_folder_names_its_base_and_license(tmp_path):
    model = genzoo.load("vae-mnist", device="cpu")
    result = genzoo.finetune(model, "mnist:train", steps=1, out=tmp_path / "ft", batch_size=8,
                             progress=False)
    data = ModelCard.load(result.folder / "README.md").data
    assert data.base_model == "vae-mnist" and data.license == "apache-2.0"
    again = genzoo.load(str(result.folder), device="cpu")  # a folder passes its lineage on
    again.save_pretrained(tmp_path / "copy")
    copied = ModelCard.load(tmp_path / "copy" / "README.md").data
    assert copied.base_model == "vae-mnist" and copied.license == "apache-2.0"


@pytest.mark.parametrize("name", ["textlm-shakespeare"])
def test_text_card_usage_prints_texts(tmp_path, name):
    model = genzoo.load(name, device="cpu")
    model.save_pretrained(tmp_path / "t")
    text = (tmp_path / "t" / "README.md").read_text()
    assert "print(samples.texts)" in text and "samples.png" not in text
