"""The vae-conv architecture: the plugin contract, seeds, options, likelihoods and training."""
import math
from pathlib import Path

import pytest
import torch

import genzoo
import genzoo.testing
from genzoo.errors import OptionError
from genzoo_vae.model import ConvVAE

WEIGHTS = Path(__file__).resolve().parents[1] / "genzoo_vae" / "weights" / "vae-mnist"
TINY = {"image_shape": [1, 8, 8], "latent_dim": 4, "channels": [8, 16], "hidden": 32}


def _tiny(seed=0, **over):
    torch.manual_seed(seed)
    return ConvVAE({**TINY, **over}).to_device("cpu")


def _blobs(n=32, side=8, seed=0):
    """Small synthetic digits: a bright square at a random place on a dark background."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, side, side)
    for i in range(n):
        r, c = torch.randint(0, side - 3, (2,), generator=g).tolist()
        x[i, 0, r:r + 3, c:c + 3] = 0.9
    return x


def test_per_sample_seeds_across_batch_sizes():
    model = _tiny()
    big = model.sample(10, seed=7, batch_size=3).images
    small = model.sample(4, seed=7, batch_size=4).images
    torch.testing.assert_close(big[:4], small, rtol=0, atol=1e-6)
    assert not torch.allclose(big[0], big[1])
    assert not torch.allclose(model.sample(2, seed=8).images, big[:2])


def test_sample_shape_range_and_temperature():
    model = _tiny()
    s = model.sample(6, seed=0)
    assert s.images.shape == (6, 1, 8, 8) and s.images.dtype == torch.float32
    assert 0 <= float(s.images.min()) and float(s.images.max()) <= 1
    assert s.meta["temperature"] == 1.0
    # temperature 0 samples the prior's mode: every sample is the same image
    zero = model.sample(3, seed=0, temperature=0).images
    torch.testing.assert_close(zero[0], zero[2])
    # a temperature scales the latent: decode(t * eps) exactly
    eps = genzoo.seeding.per_sample_randn(genzoo.seeding.sample_generators(0, 2), (4,))
    torch.testing.assert_close(model.sample(2, seed=0, temperature=0.5).images,
                               model.decode(0.5 * eps))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "hot", True])
def test_bad_temperature_is_an_option_error(bad):
    model = _tiny()
    with pytest.raises(OptionError, match="temperature"):
        model.sample(2, temperature=bad)


def test_unknown_option_is_an_option_error():
    with pytest.raises(OptionError, match=r"unknown option\(s\)"):
        _tiny().sample(2, truncation=0.5)


def test_encode_decode_reconstruct_shapes():
    model = _tiny()
    x = _blobs(5)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (5, 4)
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and 0 <= float(rec.min()) and float(rec.max()) <= 1
    torch.testing.assert_close(rec, model.decode(mean))


def test_elbo_and_iw_nll_bound_the_exact_nll():
    """With a 1-d latent, log p(x) is a 1-d integral we can do by quadrature: the (expected)
    negative ELBO and the IW bound lie above the exact NLL, and IW with large k approaches it.
    The model is trained a little first so that the posterior is sharp and the ELBO gap real."""
    model = _tiny(seed=3, latent_dim=1)
    x = _blobs(6, seed=1)
    genzoo.finetune(model, x, steps=100, batch_size=6, lr=1e-2, warmup=5, progress=False)
    z = torch.linspace(-8, 8, 4001)
    with torch.no_grad():
        logits = model.decoder(z[:, None])                                      # (G, 1, 8, 8)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits[None].expand(6, -1, -1, -1, -1), x[:, None].expand(-1, len(z), -1, -1, -1),
            reduction="none").flatten(2).sum(2)                                 # (6, G)
        log_pz = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
        exact = -(torch.logsumexp(log_px_z + log_pz, dim=1) + math.log(float(z[1] - z[0])))
    nelbo = model.elbo(x)
    assert nelbo.shape == (6,) and nelbo.device.type == "cpu"
    expected_nelbo = model.elbo(x.repeat(400, 1, 1, 1)).view(400, 6).mean(0)  # fresh draws
    iw = model.iw_nll(x, k=3000)
    assert iw.shape == (6,)
    gap = expected_nelbo - exact
    assert torch.all(gap > 0.03), gap  # a trained VAE's bound is not tight ...
    torch.testing.assert_close(iw, exact, atol=0.1, rtol=0)  # ... the IW bound nearly is
    # in expectation the bounds are ordered: NLL <= E[IW_16] <= E[-ELBO]
    iw16 = model.iw_nll(x.repeat(100, 1, 1, 1), k=16).view(100, 6).mean(0)
    assert torch.all(iw16 > exact - 0.02) and torch.all(iw16 < expected_nelbo), (iw16, exact)
    # reproducible: the posterior draws come from the seed
    torch.testing.assert_close(model.elbo(x), nelbo, rtol=0, atol=0)


def test_iw_nll_rejects_bad_k_and_shapes():
    model = _tiny()
    with pytest.raises(OptionError, match="k must be"):
        model.iw_nll(_blobs(2), k=0)
    with pytest.raises(OptionError, match="expected images shaped"):
        model.elbo(torch.rand(2, 1, 28, 28))


def test_engine_steps_lower_the_loss_and_the_folder_loads(tmp_path):
    model = _tiny(seed=4)
    x = _blobs(32)
    before = float(model.elbo(x).mean())
    result = genzoo.finetune(model, x, steps=60, out=tmp_path / "ft", batch_size=32, lr=3e-3,
                             warmup=5, progress=False, log_every=20)
    after = float(model.elbo(x).mean())
    assert after < before - 5, (before, after)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    loaded = genzoo.load(result.folder, device="cpu")
    imgs = loaded.sample(4, seed=0).images
    assert imgs.shape == (4, 1, 8, 8) and 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    torch.testing.assert_close(float(loaded.elbo(x).mean()), after, atol=1e-4, rtol=0)


@pytest.mark.skipif(not (WEIGHTS / "model.safetensors").is_file(),
                    reason="vae-mnist weights not bundled yet (python recipes/vae_mnist.py bundle)")
def test_bundled_weights_load_and_sample():
    model = genzoo.load("vae-mnist", device="cpu")
    assert type(model).__name__ == "ConvVAE"
    imgs = model.sample(16, seed=0).images
    assert imgs.shape == (16, 1, 28, 28) and 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    assert 0.05 < float(imgs.mean()) < 0.3  # dark background, bright strokes, like MNIST


class TestConformance(genzoo.testing.Conformance):
    """The plugin author's conformance kit, run on a tiny vae-conv."""

    arch = "vae-conv"
    config = TINY
    finetune_options = {"lr": 3e-3, "warmup": 3}
