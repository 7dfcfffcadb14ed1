"""The gan-dcgan architecture: the plugin contract, seeds, truncation and two-stage training."""
import json
from pathlib import Path
from statistics import NormalDist

import pytest
import torch

import genzoo
import genzoo.testing
from genzoo.errors import OptionError
from genzoo.seeding import per_sample_randn, sample_generators
from genzoo.engine.train import _make_optimizer
from genzoo_gan.model import DCGAN, truncated_latents

WEIGHTS = Path(__file__).resolve().parents[1] / "genzoo_gan" / "weights" / "gan-mnist"
TINY = {"image_shape": [1, 8, 8], "latent_dim": 8, "g_channels": [16, 8], "d_channels": [8, 16]}


def _tiny(seed=0, **over):
    torch.manual_seed(seed)
    return DCGAN({**TINY, **over}).to_device("cpu")


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module, before):
    return [k for k, v in module.named_parameters() if not torch.equal(v, before[k])]


def test_save_load_round_trip_keeps_spectral_norm_state(tmp_path):
    model = _tiny(seed=1)
    model.train()
    model.discriminator(torch.rand(4, 1, 8, 8))  # advance the power iteration: u, v != init
    model.save_pretrained(tmp_path / "m")
    loaded = genzoo.load(tmp_path / "m", device="cpu")
    assert type(loaded) is DCGAN
    assert any("parametrizations.weight.original" in k for k in loaded.state_dict())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    model.eval(), loaded.eval()  # eval: no power-iteration step on forward
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.discriminator(x), model.discriminator(x))
    torch.testing.assert_close(loaded.sample(5, seed=2).images, model.sample(5, seed=2).images)


@pytest.mark.parametrize("psi", [1.0, 0.6])
def test_per_sample_seeds_across_batch_sizes(psi):
    model = _tiny()
    big = model.sample(10, seed=7, batch_size=3, truncation=psi).images
    small = model.sample(4, seed=7, batch_size=4, truncation=psi).images
    torch.testing.assert_close(big[:4], small, rtol=0, atol=1e-6)
    assert not torch.allclose(big[0], big[1])


def test_sample_shape_and_range():
    s = _tiny().sample(6, seed=0)
    assert s.images.shape == (6, 1, 8, 8) and s.images.dtype == torch.float32
    assert 0 <= float(s.images.min()) and float(s.images.max()) <= 1
    assert s.meta["truncation"] == 1.0


def test_truncation_redraws_outside_the_central_mass():
    gens = lambda: sample_generators(3, 400)  # noqa: E731 - fresh generators each time
    plain = per_sample_randn(gens(), (8,))
    torch.testing.assert_close(truncated_latents(gens(), 8, 1.0), plain, rtol=0, atol=0)
    for psi in (0.5, 1e-6):
        z = truncated_latents(gens(), 8, psi)
        limit = NormalDist().inv_cdf(0.5 + psi / 2)
        assert float(z.abs().max()) <= limit + 1e-6
        inside = plain.abs() <= limit  # coordinates already inside are kept as drawn
        torch.testing.assert_close(z[inside], plain[inside], rtol=0, atol=0)
    # psi=0.5: the truncated normal's std is about 0.37 (vs 1), its central half at +-0.674
    z = truncated_latents(gens(), 8, 0.5)
    assert 0.33 < float(z.std()) < 0.41
    torch.testing.assert_close(truncated_latents(gens(), 8, 0.5), z, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "low", True])
def test_bad_truncation_is_an_option_error(bad):
    with pytest.raises(OptionError, match="truncation"):
        _tiny().sample(2, truncation=bad)


def test_unknown_option_and_bad_loss_are_option_errors():
    with pytest.raises(OptionError, match=r"unknown option\(s\)"):
        _tiny().sample(2, temperature=0.5)
    with pytest.raises(OptionError, match="unknown GAN loss"):
        DCGAN({**TINY, "loss": "wasserstein"})


def test_stages_split_the_parameters_and_ema_averages_the_generator():
    model = _tiny()
    stages = model.train_stages()
    assert list(stages) == ["discriminator", "generator"]
    d_ids = {id(p) for p in stages["discriminator"].params}
    g_ids = {id(p) for p in stages["generator"].params}
    assert d_ids == {id(p) for p in model.discriminator.parameters()}
    assert g_ids == {id(p) for p in model.generator.parameters()}
    assert not d_ids & g_ids and len(d_ids | g_ids) == len(list(model.parameters()))
    assert model.uses_ema and model.ema_module() is model.generator


@pytest.mark.parametrize("loss", ["hinge", "ns"])
def test_each_stage_changes_only_its_own_network(loss):
    model = _tiny(seed=2, loss=loss)
    model.train()
    x = torch.rand(8, 1, 8, 8)
    stages = model.train_stages()
    opts = {n: _make_optimizer(s.params, 1e-2, 0.0, (0.5, 0.99), torch.device("cpu"))
            for n, s in stages.items()}
    for name, own, other in [("discriminator", model.discriminator, model.generator),
                             ("generator", model.generator, model.discriminator)]:
        before_own, before_other = _snapshot(own), _snapshot(other)
        opts[name].zero_grad(set_to_none=True)
        stages[name].loss(x).backward()
        if name == "discriminator":  # the fakes carry no graph back into G
            assert all(p.grad is None for p in model.generator.parameters())
        opts[name].step()
        assert _changed(own, before_own), f"the {name} step changed nothing"
        assert not _changed(other, before_other), f"the {name} step changed the other network"


def test_engine_runs_both_stages_with_separate_optimizers(tmp_path):
    model = _tiny(seed=3)
    x = torch.rand(16, 1, 8, 8)
    g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
    out = tmp_path / "run"
    res = genzoo.finetune(model, x, steps=4, out=out, batch_size=8, warmup=1, stop_after=2,
                          progress=False, log_every=1)
    assert res.stopped_early and set(res.history[-1]) >= {"loss/discriminator", "loss/generator"}
    state = json.loads((out / "checkpoints/step-0000002/state.json").read_text())
    assert set(state["optimizers"]) == {"discriminator", "generator"}
    assert state["config"]["betas"] == [0.5, 0.99]
    assert _changed(model.generator, g0) and _changed(model.discriminator, d0)
    # resume to the end; the saved folder (EMA generator) loads and samples
    res = genzoo.finetune(DCGAN(TINY), x, steps=4, out=out, batch_size=8, warmup=1, resume=True,
                          progress=False)
    loaded = genzoo.load(res.folder, device="cpu")
    imgs = loaded.sample(4, seed=0).images
    assert imgs.shape == (4, 1, 8, 8) and 0 <= float(imgs.min()) and float(imgs.max()) <= 1


@pytest.mark.skipif(not (WEIGHTS / "model.safetensors").is_file(),
                    reason="gan-mnist weights not bundled yet (python recipes/gan_mnist.py bundle)")
def test_bundled_weights_load_and_sample():
    model = genzoo.load("gan-mnist", device="cpu")
    assert type(model).__name__ == "DCGAN"
    imgs = model.sample(16, seed=0).images
    assert imgs.shape == (16, 1, 28, 28) and 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    assert 0.05 < float(imgs.mean()) < 0.3  # dark background, bright strokes, like MNIST
    trunc = model.sample(16, seed=0, truncation=0.5).images
    assert not torch.allclose(trunc, imgs)


class TestConformance(genzoo.testing.Conformance):
    """The plugin author's conformance kit, run on a tiny gan-dcgan (only D's loss is
    expected to fall on a fixed batch: G's loss is a moving target)."""

    arch = "gan-dcgan"
    config = TINY
    finetune_stages = ["discriminator"]
