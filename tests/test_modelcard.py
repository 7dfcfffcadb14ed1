"""Model folders' README.md speak huggingface_hub's card format: measured figures are
``model-index`` eval results, and license, base_model and datasets travel through save and
finetune."""
from __future__ import annotations

import pytest
import torch
from _kit import kit, kit_site  # noqa: F401 - fixtures
from huggingface_hub import ModelCard
from torch import nn

import genzoo
from genzoo.model import GenerativeModel
from genzoo.modelcard import card_task, split_metrics
from genzoo.options import Option


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
    assert ModelCard.load(tmp_path / "t" / "README.md").data.pipeline_tag == "text-generation"


# ---- pipeline_tag and tags follow what the model can do ---------------------------------------
class Pixels(GenerativeModel):
    """A stand-in image family; ``conditions`` decides which condition options it declares."""

    arch, family, modality = "test-pixels", "test", "image"
    conditions: tuple = ()

    def __init__(self, config=None):
        super().__init__(config or {"image_shape": [1, 4, 4]})
        self.p = nn.Parameter(torch.zeros(1))

    def options(self):
        declared = {name: Option(name, "int", None, name, min=0, max=9, condition=True)
                    for name in self.conditions}
        return {**super().options(), **declared}


class LabelPixels(Pixels):
    conditions = ("label", "init", "mask")


class OwnTask(LabelPixels):
    card_fields = {"pipeline_tag": "image-to-image", "tags": ["digits"]}


def _front(model, folder, card=None):
    model.save_pretrained(folder, card=card)
    return ModelCard.load(folder / "README.md").data


def test_card_task_follows_modality_and_capabilities():
    assert card_task("image", []) == ("unconditional-image-generation", [])
    assert card_task("image", ["label", "init", "mask", "interpolate"]) == \
        (None, ["image-generation", "class-conditional", "image-to-image", "inpainting"])
    assert card_task("image", ["prompt", "init"]) == ("text-to-image", ["image-to-image"])
    assert card_task("text", ["prompt"]) == ("text-generation", [])
    assert card_task("audio", ["prompt"])[0] == "text-to-audio"


def test_class_conditional_card_is_not_tagged_unconditional(tmp_path):
    plain = _front(Pixels(), tmp_path / "plain")
    assert plain.pipeline_tag == "unconditional-image-generation"
    assert "class-conditional" not in plain.tags
    conditional = _front(LabelPixels(), tmp_path / "cond", {"tags": ["mnist"]})
    assert conditional.pipeline_tag is None
    assert conditional.tags == ["genzoo", "test", "image-generation", "class-conditional",
                                "image-to-image", "inpainting", "mnist"]
    house = _front(genzoo.load("gan-mnist", device="cpu"), tmp_path / "gan")
    assert house.pipeline_tag != "unconditional-image-generation"
    assert "class-conditional" in house.tags


def test_a_familys_own_card_fields_win(tmp_path):
    own = _front(OwnTask(), tmp_path / "own")
    assert own.pipeline_tag == "image-to-image" and "digits" in own.tags
    assert "class-conditional" in own.tags  # derived tags stay beside the family's
    saved = _front(OwnTask(), tmp_path / "saved", {"pipeline_tag": "text-to-image"})
    assert saved.pipeline_tag == "text-to-image"  # and a card passed to save wins last


# ---- cards of a model that is neither image nor text ------------------------------------------
def test_an_audio_cards_task_follows_its_prompt(tmp_path):
    from _tiny import TinyAudio
    plain = _front(TinyAudio(), tmp_path / "plain", {"metrics": {"fd": 3.0, "n": 8}})
    assert plain.pipeline_tag is None  # the Hub has no unconditional-audio task
    assert plain.tags == ["genzoo", "test", "audio-generation"]
    assert plain.eval_results[0].task_type == "audio-generation"
    prompted = _front(TinyAudio({"prompt": True}), tmp_path / "prompted",
                      {"metrics": {"fd": 3.0}})
    assert prompted.pipeline_tag == "text-to-audio" and "audio-generation" not in prompted.tags
    assert prompted.eval_results[0].task_type == "text-to-audio"
    text = (tmp_path / "plain" / "README.md").read_text()
    assert 'samples.save("samples.wav")' in text
    assert "samples.png" not in text and "image" not in text


def test_card_task_asks_a_third_partys_modality():
    from genzoo.samples import Modality

    class Rows(Modality):
        name, holds = "rows", "list"
        pipeline_tags = {"label": "tabular-classification", "": None}
        generation_tag = "tabular-generation"

    assert card_task(Rows(), []) == (None, ["tabular-generation"])
    assert card_task(Rows(), ["label"]) == ("tabular-classification", ["class-conditional"])
    assert card_task(Modality(), ["prompt"]) == (None, [])  # declares no task: none claimed


def test_a_plugins_card_fields_win_through_the_catalog(kit, tmp_path, monkeypatch):
    from conftest import sha256, write_catalog
    from genzoo.catalog import registry
    from genzoo.kit import conformance as c
    folder = tmp_path / "voice"
    c.make_model("kit-audio-card", {}).save_pretrained(folder)
    cards = write_catalog(tmp_path / "cards.yaml", [
        {"name": "kit-voice", "family": "kitaudio", "arch": "kit-audio-card",
         "source": str(folder), "files": {f.name: sha256(f) for f in folder.iterdir()}}])
    monkeypatch.setenv("GENZOO_REGISTRY", str(cards))
    registry.reset()
    model = genzoo.load("kit-voice", device="cpu")
    copy = _front(model, tmp_path / "copy")
    assert copy.pipeline_tag == "text-to-speech" and copy.base_model == "kit-voice"
    assert copy.tags == ["genzoo", "kitaudio", "audio-generation", "kit-voice"]
    result = genzoo.finetune(model, torch.rand(8, 1, 48) * 2 - 1, steps=1,
                             out=tmp_path / "ft", progress=False)
    tuned = ModelCard.load(result.folder / "README.md").data
    assert tuned.pipeline_tag == "text-to-speech" and tuned.base_model == "kit-voice"
