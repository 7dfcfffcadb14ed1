"""The conditional vae-conv: q(z|x, y) and p(x|z, y), sampling without a label from the class
prior, reconstruction with the best label, likelihoods of x alone, and the kit on it."""
import math

import pytest
import torch

import genzoo.testing
from genzoo.data import TensorImages
from genzoo.errors import OptionError
from genzoo.seeding import sample_generators
from genzoo_vae.model import ConvVAE

TINY = {"image_shape": [1, 8, 8], "latent_dim": 4, "channels": [8, 16], "hidden": 32,
        "num_classes": 3}


@pytest.fixture
def cvae() -> ConvVAE:
    torch.manual_seed(0)
    model = ConvVAE(TINY).to_device("cpu", "fp32")
    with torch.no_grad():  # make the label matter a lot in a fresh network
        model.decoder.fc[0].weight[:, 4:].normal_(0, 3)
    return model


def test_label_option_and_latents(cvae):
    assert cvae.options()["label"].max == 2 and "label" in cvae.capabilities
    assert "label" not in ConvVAE({**TINY, "num_classes": 0}).options()
    z = cvae.latents(sample_generators(0, 5), label=[0, 1, 2, 1, 0])
    assert z.shape == (5, 7) and z[:, 4:].argmax(1).tolist() == [0, 1, 2, 1, 0]
    with pytest.raises(OptionError, match="between 0 and 2"):
        cvae.sample(1, label=3)


def test_asking_for_the_drawn_label_reproduces_the_sample(cvae):
    free = cvae.sample(12, seed=2).images
    drawn = cvae.latents(sample_generators(2, 12))[:, 4:].argmax(1)
    assert len(set(drawn.tolist())) > 1
    for k in range(3):
        fixed = cvae.sample(12, seed=2, label=k).images
        assert torch.allclose(fixed[drawn == k], free[drawn == k], atol=1e-6)
        assert not torch.allclose(fixed[drawn != k], free[drawn != k], atol=1e-3)


def test_decode_takes_a_label_or_the_full_latent(cvae):
    z = torch.randn(2, 4)
    full = torch.cat([z, torch.tensor([[0.0, 0, 1], [0, 1, 0]])], 1)
    assert torch.allclose(cvae.decode(z, label=[2, 1]), cvae.decode(full))
    with pytest.raises(OptionError, match="label"):
        cvae.decode(z)


def test_reconstruction_uses_the_best_label(cvae):
    x = cvae.decode(torch.zeros(3, 4), label=[0, 1, 2]).detach()

    def neg_elbo_at_mean(label):  # -log p(x|z=mean, y) + KL(q(z|x, y) || N(0, I)) per image
        with torch.no_grad():
            mean, logvar = cvae.encode(x, label=label)
            rec = torch.nn.functional.binary_cross_entropy(
                cvae.reconstruct(x, label=label), x, reduction="none").flatten(1).sum(1)
            return rec + 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(1)
    costs = torch.stack([neg_elbo_at_mean(k) for k in range(3)], 1)
    best = cvae.best_labels(x)
    assert torch.equal(best, costs.argmin(1))
    assert torch.allclose(cvae.reconstruct(x), cvae.reconstruct(x, label=best.tolist()))
    init = cvae.sample(3, seed=0, init=x, temperature=0).images
    assert torch.allclose(init, cvae.reconstruct(x), atol=1e-6)


def test_likelihoods_marginalise_the_label(cvae):
    x = torch.rand(4, 1, 8, 8).round()
    per_class = torch.stack([cvae._iw_cost(x, torch.zeros(4, 1, 4), torch.full((4,), k))
                             for k in range(3)], 1)
    expected = -torch.logsumexp(math.log(1 / 3) - per_class, 1)
    with torch.no_grad():  # k=1 with eps = 0: the marginal of the per-class costs at the mean
        got = cvae._marginal(lambda y: cvae._iw_cost(x, torch.zeros(4, 1, 4), y), 4)
    assert torch.allclose(got, expected)
    nll, elbo = cvae.iw_nll(x, k=16), cvae.elbo(x)
    assert nll.shape == (4,) and torch.isfinite(nll).all() and (nll <= elbo + 2).all()


def test_prior_follows_the_training_labels(cvae, tmp_path):
    cvae.prepare_data(TensorImages(torch.rand(4, 1, 8, 8), torch.tensor([1, 1, 1, 2]), source="t"))
    assert torch.allclose(cvae.class_prior, torch.tensor([0.0, 0.75, 0.25]))
    assert 0 not in cvae.latents(sample_generators(0, 32))[:, 4:].argmax(1).tolist()
    cvae.save_pretrained(tmp_path / "m")
    assert torch.equal(ConvVAE.from_pretrained(tmp_path / "m", device="cpu").class_prior,
                       cvae.class_prior)


def test_unlabelled_images_train_the_no_label_path(cvae):
    images = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    a = float(cvae.training_loss((images, torch.full((4,), -1))))
    torch.manual_seed(0)
    b = float(cvae.training_loss((images, torch.tensor([0, 1, 2, 0]))))
    assert math.isfinite(a) and a != b


def test_decoder_depth_adds_convolutions():
    deep = ConvVAE({**TINY, "decoder_depth": 2})
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deep.decoder.deconv) == 2
    assert deep.sample(2, seed=0).images.shape == (2, 1, 8, 8)


class TestConformance(genzoo.testing.Conformance):
    """The kit on a tiny conditional vae-conv (its label and init conditions included)."""

    arch = "vae-conv"
    config = TINY


def test_npz_labels_train_a_conditional_vae(cvae, tmp_path, caplog):
    import numpy as np
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8), labels=[2, 2, 1, -1])
    data = cvae.prepare_data(tmp_path / "d.npz")
    assert data[torch.arange(4)][1].tolist() == [2, 2, 1, -1]
    assert torch.allclose(cvae.class_prior, torch.tensor([0.0, 1 / 3, 2 / 3]))
    with caplog.at_level("WARNING", logger="genzoo"):
        ConvVAE({**TINY, "num_classes": 0}).prepare_data(tmp_path / "d.npz")
    assert sum("ignores them" in r.getMessage() for r in caplog.records) == 1, \
        [r.getMessage() for r in caplog.records]  # said once (other loggers may speak too)
