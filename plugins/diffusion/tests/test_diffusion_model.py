"""The house diffusion model: seeds, options, training, the on-disk format and bad weights."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import genzoo
from genzoo.errors import OptionError, WeightsError
from genzoo_diffusion.model import DiffusionModel

TINY = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = DiffusionModel(TINY)
    with torch.no_grad():  # the UNet starts at zero output; give it something to say
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("sampler, steps", [("dpmsolver++", 4), ("ddim", 4), ("ddpm", 5)])
def test_sample_i_depends_only_on_seed_and_i(tiny, sampler, steps):
    a = tiny.sample(6, seed=3, batch_size=4, sampler=sampler, steps=steps).images
    b = tiny.sample(2, seed=3, batch_size=1, sampler=sampler, steps=steps).images
    c = tiny.sample(6, seed=4, sampler=sampler, steps=steps).images
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.allclose(a[:2], b, atol=1e-5)
    assert not torch.allclose(a, c)


def test_sampling_layout_follows_precision(monkeypatch):
    """Channels-last in fp32 (where the lever is pulled: GENZOO_LEVERS=on, no timing); the
    default layout under CPU autocast (the faster one there), and samples agree across the
    switch."""
    monkeypatch.setenv("GENZOO_LEVERS", "on")
    torch.manual_seed(0)
    model = DiffusionModel(TINY).eval()
    conv = next(m for m in model.unet.modules()  # one whose two layouts differ in memory
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size[0] > 1)
    fp32 = model.sample(2, steps=3).images
    assert model._sampling_layout() == torch.channels_last
    assert not conv.weight.is_contiguous()
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    model.to_device("cpu", "bf16")
    bf16 = model.sample(2, steps=3).images
    assert model._sampling_layout() == torch.contiguous_format and conv.weight.is_contiguous()
    assert (fp32 - bf16).abs().mean() < 0.05
    model.to_device("cpu", "fp32")
    torch.testing.assert_close(model.sample(2, steps=3).images, fp32)


def test_bad_sampling_options_are_one_line_errors(tiny):
    with pytest.raises(OptionError, match=r"option 'sampler' must be one of ddpm, ddim, "
                       r"dpmsolver\+\+, euler, euler-a; got 'heun'"):
        tiny.sample(1, sampler="heun")
    with pytest.raises(OptionError, match=r"unknown option\(s\)"):
        tiny.sample(1, guidance=3)
    with pytest.raises(OptionError, match="positive integer"):
        tiny.sample(0)


def test_min_snr_weights_cap_the_easy_timesteps():
    model = DiffusionModel(TINY)
    t = torch.tensor([0, 500, 999])
    w = model._loss_weight(t)
    snr = model.schedule.snr(t)
    assert w[0] == pytest.approx(5.0 / (float(snr[0]) + 1), rel=1e-5)
    assert w[2] == pytest.approx(float(snr[2]) / (float(snr[2]) + 1), rel=1e-3)


def test_a_few_engine_steps_lower_the_loss():
    torch.manual_seed(0)
    model = DiffusionModel(TINY)
    patterns = torch.zeros(2, 1, 8, 8)
    patterns[0, :, :4], patterns[1, :, :, :4] = 1, 1  # two learnable shapes: top and left halves
    data = patterns.repeat(32, 1, 1, 1)
    torch.manual_seed(1)
    with torch.no_grad():
        before = sum(float(model.training_loss(data)) for _ in range(8)) / 8
    genzoo.finetune(model, data, steps=40, batch_size=32, lr=3e-3, progress=False)
    torch.manual_seed(1)
    with torch.no_grad():
        after = sum(float(model.training_loss(data)) for _ in range(8)) / 8
    assert after < 0.8 * before


def test_save_load_round_trip_keeps_samples(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["genzoo"]["arch"] == "diffusion-unet" and config["scheduler"]["prediction_type"] == "v_prediction"
    assert "library_name: genzoo" in (tmp_path / "m" / "README.md").read_text()
    loaded = DiffusionModel.from_pretrained(tmp_path / "m", device="cpu")
    assert torch.equal(loaded.sample(3, seed=1, steps=3).images, tiny.sample(3, seed=1, steps=3).images)


def test_corrupt_or_missing_weights_are_refused_with_one_line(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(WeightsError, match="corrupt safetensors"):
        DiffusionModel.from_pretrained(tmp_path / "m")
    weights.unlink()
    with pytest.raises(WeightsError, match="weights file missing"):
        DiffusionModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsError, match="pickle weights .* are never loaded"):
        DiffusionModel.from_pretrained(tmp_path / "m")


def test_cli_reports_a_corrupt_file_in_one_line(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "genzoo", "sample", str(tmp_path / "m"), "-n", "1",
                           "-o", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt safetensors" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "x.png").exists()
