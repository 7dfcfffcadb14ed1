"""Steering a diffusion model: class labels with classifier-free guidance, image-to-image
(SDEdit) and inpainting, each reproducible per sample and recorded in the provenance."""
from __future__ import annotations

import pytest
import torch

import genzoo
from genzoo.errors import OptionError
from genzoo_diffusion.model import DiffusionModel
from genzoo_diffusion.samplers import first_step

CONFIG = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}


@pytest.fixture
def labelled() -> DiffusionModel:
    torch.manual_seed(0)
    model = DiffusionModel({**CONFIG, "num_classes": 3}).to_device("cpu", "fp32")
    with torch.no_grad():  # zero-initialised layers (labels, output) would hide the labels
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def test_label_dropout_drops(labelled):
    images, labels = torch.rand(32, 1, 8, 8), torch.arange(32) % 3

    def loss(dropout):
        labelled.config["label_dropout"] = dropout
        torch.manual_seed(1)
        return float(labelled.training_loss((images, labels)))
    assert loss(0.0) != loss(1.0)
    torch.manual_seed(1)
    labelled.config["label_dropout"] = 1.0
    unlabelled = float(labelled.training_loss((images, torch.full((32,), -1))))
    assert loss(1.0) == unlabelled  # dropped labels are the "no label" token


def _drawn(model, n, seed):
    """The labels sampling without a label draws (uniform prior over the model's classes)."""
    from genzoo.seeding import per_sample_randn, per_sample_labels, sample_generators
    gens = sample_generators(seed, n)
    per_sample_randn(gens, model.image_shape)  # the initial noise comes first
    return per_sample_labels(gens, torch.ones(model.num_classes)).tolist()


def test_no_label_samples_the_mixture_of_classes(labelled):
    drawn = _drawn(labelled, 6, seed=1)
    assert len(set(drawn)) > 1
    free = labelled.sample(6, seed=1, steps=4).images
    assert torch.allclose(free, labelled.sample(6, seed=1, steps=4, label=drawn,
                                                guidance=1.0).images, atol=1e-6)
    other = [(k + 1) % 3 for k in drawn]
    assert not torch.allclose(free, labelled.sample(6, seed=1, steps=4, label=other,
                                                    guidance=1.0).images, atol=1e-3)
    labelled.config["class_prior"] = [0.0, 0.0, 1.0]  # what prepare_data records
    assert labelled.sample(4, seed=1, steps=4).meta["label"] is None  # asked for none
    assert torch.allclose(labelled.sample(4, seed=1, steps=4).images,
                          labelled.sample(4, seed=1, steps=4, label=2, guidance=1.0).images)


def test_labels_steer_and_guidance_costs_one_batched_call(labelled, monkeypatch):
    drawn = _drawn(labelled, 2, seed=0)
    plain = labelled.sample(2, seed=0, steps=4).images
    other = labelled.sample(2, seed=0, steps=4, label=[(k + 1) % 3 for k in drawn],
                            guidance=1.0).images
    assert not torch.allclose(plain, other)
    calls = []
    real = labelled.unet.forward

    def counting(x, t, label=None):
        calls.append(x.shape[0])
        return real(x, t, label)
    monkeypatch.setattr(labelled.unet, "forward", counting)
    labelled.sample(2, seed=0, steps=4, label=[0, 1], guidance=3.0)
    assert calls == [4] * 4  # labelled and unlabelled copies in one batch per step


def test_per_sample_labels_keep_per_sample_seeds(labelled):
    full = labelled.sample(4, seed=3, steps=4, label=[0, 1, 2, 0], batch_size=4).images
    head = labelled.sample(2, seed=3, steps=4, label=[0, 1], batch_size=1).images
    assert torch.allclose(full[:2], head, atol=1e-5)
    with pytest.raises(OptionError, match="3 values for 4 samples"):
        labelled.sample(4, seed=0, label=[0, 1, 2])
    with pytest.raises(OptionError, match="between 0 and|out of range"):
        labelled.sample(1, seed=0, label=7)


def test_unconditional_model_names_what_it_supports():
    model = DiffusionModel(CONFIG)
    with pytest.raises(OptionError) as e:
        model.sample(1, seed=0, label=1)
    assert "label" in str(e.value) and "init" in str(e.value) and "mask" in str(e.value)


def test_image_to_image_moves_less_at_lower_strength():
    torch.manual_seed(0)
    model = DiffusionModel(CONFIG).to_device("cpu", "fp32")
    init = torch.rand(2, 1, 8, 8)
    near = model.sample(2, seed=0, steps=10, init=init, strength=0.2).images
    far = model.sample(2, seed=0, steps=10, init=init, strength=1.0, sampler="ddim").images
    assert (near - init).abs().mean() < (far - init).abs().mean()
    assert first_step(10, 0.5) == 5 and first_step(10, 1.0) == 0 and first_step(10, 0.01) == 9


def test_inpainting_keeps_the_unmasked_region():
    torch.manual_seed(0)
    model = DiffusionModel(CONFIG).to_device("cpu", "fp32")
    init = torch.rand(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    out = model.sample(2, seed=0, steps=6, init=init, mask=mask)
    assert torch.allclose(out.images[:, :, :4], init[:, :, :4].expand(2, -1, -1, -1), atol=1e-6)
    assert not torch.allclose(out.images[:, :, 4:], init[:, :, 4:].expand(2, -1, -1, -1))
    assert set(out.meta) >= {"init_sha256", "mask_sha256", "strength"}
    with pytest.raises(OptionError, match="mask needs init"):
        model.sample(1, seed=0, mask=mask)


def test_a_model_that_sampled_can_be_finetuned(monkeypatch):
    """Sampling converts the network's layout under inference mode; its weights must stay
    ordinary tensors, or the next finetune fails in backward."""
    monkeypatch.setenv("GENZOO_LEVERS", "on")  # channels-last: the conversion happens
    torch.manual_seed(0)
    model = DiffusionModel(CONFIG).to_device("cpu", "fp32")
    model.sample(2, seed=0, steps=2)
    result = genzoo.finetune(model, torch.rand(8, 1, 8, 8), steps=2, batch_size=4, progress=False)
    assert result.steps == 2


def test_training_labels_set_the_class_prior(labelled):
    from genzoo.data import TensorImages
    labelled.prepare_data(TensorImages(torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 0, 2]),
                                       source="t"))
    assert labelled.config["class_prior"] == [0.75, 0.0, 0.25]
