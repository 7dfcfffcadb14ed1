"""diffusers' AutoencoderKL in genzoo ("diffusers-autoencoderkl"): tiny random autoencoders
saved by diffusers load through genzoo, and genzoo's reconstructions equal diffusers' own
``decode(encode(x).latent_dist.mode())`` (and ``latent_dist.sample(generator=...)``)."""
import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genzoo
import genzoo.testing
from genzoo.errors import OptionError, PluginMissingError, WeightsError
from genzoo.seeding import sample_generators

diffusers = pytest.importorskip("diffusers")
from diffusers import AutoencoderKL  # noqa: E402
from genzoo_vae.autoencoder_kl import ARCH, AutoencoderKLModel  # noqa: E402

pytestmark = pytest.mark.slow  # imports diffusers (seconds on a 2-core CPU)

#: The configuration diffusers' own AutoencoderKL tests use.
DIFFUSERS_TINY = {"block_out_channels": [32, 64], "in_channels": 3, "out_channels": 3,
                  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
                  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
                  "latent_channels": 4, "norm_num_groups": 32, "sample_size": 32}


def _vae(seed=0, **over):
    torch.manual_seed(seed)
    return AutoencoderKL(**{**DIFFUSERS_TINY, **over}).eval()


def _to_unit(x):
    return ((x.float() + 1) / 2).clamp(0, 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors)
    and the diffusers model that wrote it."""
    root = tmp_path_factory.mktemp("akl")
    vae = _vae()
    vae.save_pretrained(root / "vae", safe_serialization=True)
    return root / "vae", vae


@pytest.fixture(scope="module")
def model(folder):
    return genzoo.load(str(folder[0]), device="cpu", dtype="fp32")


def _images(n, c=3, side=32, seed=0):
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed))


def _run(*args):
    from genzoo.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_folder_is_detected_and_loads_as_a_vae(folder, model):
    from genzoo.plugins import detect_arch
    config = json.loads((folder[0] / "config.json").read_text())
    assert detect_arch(config, ["config.json", "diffusion_pytorch_model.safetensors"]) == ARCH
    assert detect_arch({"_class_name": "UNet2DModel"}, ["config.json"]) != ARCH
    assert type(model) is AutoencoderKLModel and model.family == "vae" and model.arch == ARCH
    assert model.config["image_shape"] == [3, 32, 32] and model.pretrained
    assert sorted(model.capabilities) == ["init", "interpolate"]


def test_reconstruction_equals_diffusers(folder, model):
    vae, x = folder[1], _images(5)
    with torch.no_grad():
        want = _to_unit(vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample)
    got = model.sample(5, seed=3, batch_size=2, init=x).images
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # the mode ignores the seed; the raw latents are diffusers' unscaled posterior mean
    torch.testing.assert_close(model.sample(5, seed=9, init=x).images, got, rtol=0, atol=1e-5)
    with torch.no_grad():
        mean = vae.encode(x * 2 - 1).latent_dist.mean
    torch.testing.assert_close(model.latents(sample_generators(0, 5), init=x), mean,
                               rtol=0, atol=1e-5)


def test_posterior_sampling_equals_diffusers_per_sample(folder, model):
    vae, x = folder[1], _images(4, seed=1)
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.sample(generator=sample_generators(11, 4))
        want = _to_unit(vae.decode(z).sample)
    got = model.sample(4, seed=11, batch_size=3, init=x, latent="sample").images
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # sample i depends only on (seed, i): the first two alone are the first two of four
    two = model.sample(2, seed=11, init=x[:2], latent="sample").images
    torch.testing.assert_close(two, got[:2], rtol=0, atol=1e-5)
    assert not torch.allclose(got, model.sample(4, seed=12, init=x, latent="sample").images)


def test_sampling_without_init_is_refused_in_one_line(folder, model):
    with pytest.raises(OptionError, match="prior does not give images.*--init") as e:
        model.sample(2, seed=0)
    assert "\n" not in str(e.value)
    result = _run("sample", folder[0], "-o", folder[0].parent / "none.png")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "prior does not give images" in lines[0], result.output


def test_cli_reconstructs_init_image(folder, tmp_path):
    from PIL import Image
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "img.png")
    result = _run("sample", folder[0], "--init", tmp_path / "img.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()
    # one picture, one reconstruction (not a grid of 16), written one file per sample here
    result = _run("sample", folder[0], "--init", tmp_path / "img.png", "-o", tmp_path / "d/")
    assert result.exit_code == 0, result.output
    [out] = (tmp_path / "d").glob("*.png")
    assert Image.open(out).size == (32, 32)
    vae = folder[1]
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = _to_unit(vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample)
    got = torch.from_numpy(np.array(Image.open(out))).permute(2, 0, 1).float() / 255
    assert float((got - want[0]).abs().max()) <= 1 / 255 + 1e-6  # PNG rounding only


def test_cli_interpolates_between_two_init_pictures(folder, tmp_path):
    from PIL import Image
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(2):
        pixels = (np.random.default_rng(i).random((32, 32, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(pics / f"{i}.png")
    result = _run("sample", folder[0], "--init", pics, "--interpolate", 1, "-o", tmp_path / "f/")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "f").glob("*.png"))) == 8  # -n's default for frames


def test_init_images_are_checked(model):
    with pytest.raises(OptionError, match="multiples of 2") as e:
        model.sample(1, init=_images(1, side=31))
    assert "\n" not in str(e.value)
    with pytest.raises(OptionError, match=r"\(N, 3, H, W\)"):
        model.sample(1, init=_images(1, c=1))
    # the autoencoder is convolutional: other multiples of its factor reconstruct
    assert model.sample(1, init=_images(1, side=16)).images.shape == (1, 3, 16, 16)


def test_interpolate_between_two_init_images(model):
    x = _images(2, seed=4)
    frames = model.interpolate(1, 2, 5, init=x).images
    assert frames.shape == (5, 3, 32, 32)
    torch.testing.assert_close(frames[0], model.sample(1, seed=1, init=x[:1]).images[0],
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(frames[-1], model.sample(1, seed=2, init=x[1:]).images[0],
                               rtol=0, atol=1e-5)
    assert not torch.allclose(frames[2], frames[0]) and not torch.allclose(frames[2], frames[-1])
    with pytest.raises(OptionError, match="two init images"):
        model.interpolate(1, 2, 5, init=x[:1])
    with pytest.raises(OptionError, match="two init images"):
        model.interpolate(1, 2, 5)


def test_bin_only_folder_is_refused_without_unpickling(tmp_path, monkeypatch):
    _vae().save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert not list((tmp_path / "bin").glob("*.safetensors"))

    def no_pickle(*args, **kwargs):
        raise AssertionError("a pickle was read")
    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    with pytest.raises(WeightsError, match="only pickle .bin weights") as e:
        genzoo.load(str(tmp_path / "bin"), device="cpu")
    assert "\n" not in str(e.value)


def test_corrupt_weights_are_one_line_errors(folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder[0] / "config.json").read_text())
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(b"\x10\x00not safetensors")
    with pytest.raises(WeightsError, match="diffusers could not load the AutoencoderKL") as e:
        genzoo.load(str(bad), device="cpu")
    assert "\n" not in str(e.value)


def test_without_diffusers_a_plugin_missing_error_names_the_extra(monkeypatch):
    import sys
    from genzoo_vae import autoencoder_kl
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(PluginMissingError, match=r"pip install 'genzoo-vae\[diffusers\]'"):
        autoencoder_kl._vae_class()


def test_save_pretrained_round_trip_in_genzoo_format(model, tmp_path):
    saved = model.save_pretrained(tmp_path / "copy")
    config = json.loads((saved / "config.json").read_text())
    assert config["genzoo"]["arch"] == ARCH and config["diffusers_vae"]["latent_channels"] == 4
    assert (saved / "model.safetensors").is_file()
    assert not (saved / "diffusion_pytorch_model.safetensors").exists()
    again = genzoo.load(str(saved), device="cpu", dtype="fp32")
    assert type(again) is AutoencoderKLModel and again.config == model.config
    mine, theirs = model.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    x = _images(2, seed=5)
    assert torch.equal(again.sample(2, init=x).images, model.sample(2, init=x).images)


def test_evaluate_metrics_reports_reconstruction_psnr(folder, model):
    vae, x = folder[1], _images(7, seed=6)
    got = model.evaluate_metrics(x, seed=0)
    with torch.no_grad():
        recon = _to_unit(vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample)
    mse = (recon - x).pow(2).flatten(1).mean(1).double()
    assert got["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), abs=1e-3)
    assert got["mse"] == pytest.approx(float(mse.mean()), rel=1e-4)
    assert got["latent_kl"] > 0


def test_genzoo_eval_reports_reconstruction_figures(tmp_path, monkeypatch):
    """`genzoo eval` on a grey 28x28 AutoencoderKL: FD and the rest in the MNIST feature
    space measure its reconstructions of the reference images; PSNR comes from the model."""
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path / "home"))
    _vae(in_channels=1, out_channels=1, sample_size=28).save_pretrained(
        tmp_path / "grey", safe_serialization=True)
    ref = (np.random.default_rng(1).random((12, 28, 28)) * 255).astype("uint8")
    np.savez(tmp_path / "ref.npz", images=ref)
    result = _run("eval", tmp_path / "grey", "--data", tmp_path / "ref.npz", "-n", 20, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert out["n"] == 12 and out["reference_n"] == 12  # capped at the reference set
    for key in ("fd", "kid", "precision", "recall", "psnr", "mse", "latent_kl"):
        assert isinstance(out[key], float) and np.isfinite(out[key]), key
    assert out["family"] == "vae"


# the kit's checks on a still smaller AutoencoderKL (fast to finetune on a 2-core CPU)
class TestAutoencoderKLConformance(genzoo.testing.Conformance):
    arch = ARCH
    config = {"image_shape": [1, 8, 8],
              "diffusers_vae": {**DIFFUSERS_TINY, "in_channels": 1, "out_channels": 1,
                                "block_out_channels": [8, 16], "norm_num_groups": 4,
                                "latent_channels": 2, "sample_size": 8}}
    finetune_options = {"lr": 2e-3, "warmup": 5}
    # scaling_factor/shift_factor scale latents for a diffusion pipeline (module docstring:
    # genzoo's latents are raw) and force_upcast is a pipeline's fp16 switch: kept to be
    # saved back, read by nothing here
    config_inert = ("diffusers_vae.scaling_factor", "diffusers_vae.force_upcast")
