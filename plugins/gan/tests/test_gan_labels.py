"""The class-conditional gan-dcgan: labels through the latent, a projection discriminator,
sampling without a label from the class prior, and the conformance kit on it."""
import pytest
import torch

import genzoo.testing
from genzoo.data import TensorImages
from genzoo.errors import DataError, OptionError
from genzoo.seeding import sample_generators
from genzoo_gan.model import DCGAN

TINY = {"image_shape": [1, 8, 8], "latent_dim": 8, "g_channels": [16, 8], "d_channels": [8, 16],
        "num_classes": 3}


@pytest.fixture
def cgan() -> DCGAN:
    torch.manual_seed(0)
    return DCGAN(TINY).to_device("cpu", "fp32")


def test_label_option_only_on_a_conditional_model(cgan):
    assert cgan.options()["label"].max == 2 and "label" in cgan.capabilities
    plain = DCGAN({**TINY, "num_classes": 0})
    assert "label" not in plain.options()
    with pytest.raises(OptionError, match="label"):
        plain.sample(1, label=1)
    with pytest.raises(OptionError, match="between 0 and 2"):
        cgan.sample(1, label=3)


def test_asking_for_the_drawn_label_reproduces_the_sample(cgan):
    free = cgan.sample(12, seed=4).images
    drawn = cgan.latents(sample_generators(4, 12))[:, -3:].argmax(1)
    assert len(set(drawn.tolist())) > 1  # the prior was sampled, not one class
    for k in range(3):
        fixed = cgan.sample(12, seed=4, label=k).images
        same = drawn == k
        assert torch.allclose(fixed[same], free[same], atol=1e-6)
        assert not torch.allclose(fixed[~same], free[~same], atol=1e-3)


def test_prior_follows_the_training_labels_and_is_saved(cgan, tmp_path):
    labels = torch.tensor([0] * 6 + [2] * 2)
    data = cgan.prepare_data(TensorImages(torch.rand(8, 1, 8, 8), labels, source="t"))
    assert torch.allclose(cgan.class_prior, torch.tensor([0.75, 0.0, 0.25]))
    assert data[0][1] == 0
    drawn = cgan.latents(sample_generators(0, 64))[:, -3:].argmax(1)
    assert 1 not in drawn.tolist() and (drawn == 0).sum() > (drawn == 2).sum()
    cgan.save_pretrained(tmp_path / "m")
    again = DCGAN.from_pretrained(tmp_path / "m", device="cpu")
    assert torch.equal(again.class_prior, cgan.class_prior)
    with pytest.raises(DataError, match="label 5"):
        cgan.prepare_data(TensorImages(torch.rand(2, 1, 8, 8), torch.tensor([0, 5]), source="t"))


def test_projection_discriminator_judges_the_label(cgan):
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        for p in cgan.discriminator.embed.parameters():
            p.normal_()
        a = cgan.discriminator(x, torch.tensor([0, 0, 0, 0]))
        b = cgan.discriminator(x, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(a, b)


def test_unlabelled_images_train_against_the_no_label_embedding(cgan, monkeypatch):
    seen = []
    real = cgan.discriminator.forward
    monkeypatch.setattr(cgan.discriminator, "forward",
                        lambda x, label=None: seen.append(label) or real(x, label))
    images = torch.rand(4, 1, 8, 8)
    cgan.d_loss((images, torch.tensor([-1, 1, -1, 2])))
    assert seen[0].tolist() == [3, 1, 3, 2] * 2  # real then fake, "no label" is index 3
    cgan.g_loss((images, torch.tensor([-1, 1, -1, 2])))
    assert seen[1].tolist() == [3, 1, 3, 2]


def test_interpolating_between_classes_mixes_their_one_hots(cgan):
    frames = cgan.interpolate(1, 2, 3)
    ends = cgan.sample(1, seed=1).images, cgan.sample(1, seed=2).images
    assert torch.allclose(frames.images[0], ends[0][0], atol=1e-5)
    assert torch.allclose(frames.images[2], ends[1][0], atol=1e-5)


class TestConformance(genzoo.testing.Conformance):
    """The kit on a tiny class-conditional gan-dcgan (its label condition included)."""

    arch = "gan-dcgan"
    config = TINY
    finetune_stages = ["discriminator"]


def test_class_folders_train_the_labels_and_an_unconditional_gan_says_it_ignores_them(
        cgan, tmp_path, caplog):
    import numpy as np
    from PIL import Image
    for k, count in enumerate([3, 0, 1]):  # ImageFolder layout: root/CLASS/x.png
        (tmp_path / f"c{k}").mkdir()
        for i in range(count):
            Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(tmp_path / f"c{k}" / f"{i}.png")
    data = cgan.prepare_data(tmp_path)
    assert data[torch.arange(4)][1].tolist() == [0, 0, 0, 2]
    assert torch.allclose(cgan.class_prior, torch.tensor([0.75, 0.0, 0.25]))
    plain = DCGAN({**TINY, "num_classes": 0})
    with caplog.at_level("WARNING", logger="genzoo"):
        images = plain.prepare_data(tmp_path)
    assert images[torch.arange(4)].shape == (4, 1, 8, 8)
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "ignores them" in warning.getMessage() and "gan-dcgan" in warning.getMessage()
