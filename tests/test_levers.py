"""Performance levers chosen by measurement (genzoo.levers): the per-CPU cache, the
GENZOO_LEVERS override, the warning for a precision slower than fp32, and the house UNet's
layout following the decision. Timings are faked: nothing here depends on how fast this
machine is."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from genzoo import levers
from genzoo.errors import OptionError

TINY = {"image_shape": [1, 8, 8], "unet": {"channels": [8, 16], "blocks": 1, "attention": [1]}}


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """No decision or warning carried over from another test; measuring unless told."""
    monkeypatch.setattr(levers, "_memo", {})
    monkeypatch.setattr(levers, "_warned", set())
    monkeypatch.delenv("GENZOO_LEVERS", raising=False)


def fake_timings(monkeypatch, **seconds: float) -> list[list[str]]:
    """Make every measurement report ``seconds`` (by name); returns the list of timed calls."""
    calls: list[list[str]] = []

    def timed(runs):
        calls.append(sorted(runs))
        return {name: seconds[name] for name in runs}
    monkeypatch.setattr(levers, "_time", timed)
    return calls


def counting():
    """A callable that counts its calls, and the counter."""
    count = [0]

    def run():
        count[0] += 1
    return run, count


def test_measurement_is_cached_per_cpu_model_in_genzoo_home(monkeypatch):
    run_a, a = counting()
    run_b, b = counting()
    first = levers.measured("net/batch4", {"default": run_a, "lever": run_b})
    assert a[0] >= 2 and b[0] >= 2  # warm-up and timed runs of each
    entries = json.loads(levers.cache_path().read_text())["entries"]
    (key, entry), = entries.items()
    assert json.loads(key)[0] == levers.cpu_model() == entry["cpu"]
    assert json.loads(key)[1] == torch.__version__ and entry["key"] == "net/batch4"
    levers._memo.clear()  # a new process: the decision comes from the file
    before = (a[0], b[0])
    assert levers.measured("net/batch4", {"default": run_a, "lever": run_b}) == first
    assert (a[0], b[0]) == before
    monkeypatch.setattr(levers, "cpu_model", lambda: "AMD EPYC 9654 96-Core Processor")
    levers.measured("net/batch4", {"default": run_a, "lever": run_b})  # another CPU: timed
    assert a[0] > before[0]
    assert len(json.loads(levers.cache_path().read_text())["entries"]) == 2


def test_a_damaged_cache_only_costs_a_measurement(monkeypatch):
    calls = fake_timings(monkeypatch, default=2.0, lever=1.0)
    levers.cache_path().parent.mkdir(parents=True, exist_ok=True)
    levers.cache_path().write_text('{"version": 1, "entries": {"x"')
    assert levers.use_lever("net", lambda: None, lambda: None)
    assert len(calls) == 1
    assert len(json.loads(levers.cache_path().read_text())["entries"]) == 1


@pytest.mark.parametrize("lever, default, pulled", [(1.0, 2.0, True), (2.0, 1.0, False),
                                                    (1.0, 1.0, False)])
def test_the_lever_is_pulled_only_where_measured_faster(monkeypatch, lever, default, pulled):
    fake_timings(monkeypatch, default=default, lever=lever)
    assert levers.use_lever("net", lambda: None, lambda: None) is pulled


def test_genzoo_levers_overrides_without_timing(monkeypatch):
    calls = fake_timings(monkeypatch, default=2.0, lever=1.0)
    monkeypatch.setenv("GENZOO_LEVERS", "off")
    assert levers.use_lever("net", lambda: None, lambda: None) is False
    monkeypatch.setenv("GENZOO_LEVERS", "ON")
    assert levers.use_lever("net", lambda: None, lambda: None) is True
    assert levers.warn_if_slower("net/bf16", "bf16", lambda: None, lambda: None) is None
    assert calls == [] and not levers.cache_path().exists()
    monkeypatch.setenv("GENZOO_LEVERS", "fast")
    with pytest.raises(OptionError, match=r"GENZOO_LEVERS='fast' is not one of measure, on, off"):
        levers.use_lever("net", lambda: None, lambda: None)


def test_a_precision_slower_than_fp32_gets_one_warning_line(monkeypatch, caplog):
    fake_timings(monkeypatch, fp32=1.0, bf16=4.0)
    with caplog.at_level(logging.WARNING, logger="genzoo"):
        assert levers.warn_if_slower("net/bf16", "bf16", lambda: None, lambda: None) == 4.0
        levers.warn_if_slower("net/bf16", "bf16", lambda: None, lambda: None)
    lines = [r.getMessage() for r in caplog.records if r.name == "genzoo"]
    assert lines == [f"bf16 measured 4.0x slower than fp32 on this CPU ({levers.cpu_model()}): "
                     "--dtype fp32 is faster here"]


def test_a_precision_faster_than_fp32_is_not_warned_about(monkeypatch, caplog):
    fake_timings(monkeypatch, fp32=1.0, bf16=0.7)
    with caplog.at_level(logging.WARNING, logger="genzoo"):
        assert levers.warn_if_slower("net/bf16", "bf16", lambda: None, lambda: None) is None
    assert not caplog.records


# ---- the house UNet follows the decision -------------------------------------------------
def tiny_model():
    from genzoo_diffusion.model import DiffusionModel
    torch.manual_seed(0)
    model = DiffusionModel(TINY)
    with torch.no_grad():  # the UNet starts at zero output; give it something to say
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def conv_weight(model) -> torch.Tensor:
    """A convolution weight whose two layouts differ in memory."""
    return next(m for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d)
                and m.in_channels > 1 and m.kernel_size[0] > 1).weight


def test_house_unet_samples_in_the_layout_measured_faster(monkeypatch):
    model = tiny_model()
    calls = fake_timings(monkeypatch, default=1.0, lever=2.0)  # channels-last slower here
    slow_cl = model.sample(3, steps=3).images
    assert calls and model._sampling_layout(3) == torch.contiguous_format
    assert conv_weight(model).is_contiguous()
    key = json.loads(next(iter(json.loads(levers.cache_path().read_text())["entries"])))[-1]
    assert key.startswith("diffusion-unet/") and "batch3/channels-last/fp32" in key
    levers._memo.clear()
    levers.cache_path().unlink()
    fake_timings(monkeypatch, default=2.0, lever=1.0)  # channels-last faster here
    fast_cl = model.sample(3, steps=3).images
    assert model._sampling_layout(3) == torch.channels_last
    assert conv_weight(model).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast_cl, slow_cl, atol=1e-5, rtol=0)


def test_house_unet_measures_for_real_without_changing_samples(monkeypatch):
    model = tiny_model()
    monkeypatch.setenv("GENZOO_LEVERS", "off")
    reference = model.sample(2, steps=3).images
    assert not levers.cache_path().exists()
    monkeypatch.setenv("GENZOO_LEVERS", "measure")
    measured = model.sample(2, steps=3).images
    (entry,) = json.loads(levers.cache_path().read_text())["entries"].values()
    assert set(entry["seconds"]) == {"default", "lever"}
    assert model._sampling_layout(2) == (torch.channels_last if entry["seconds"]["lever"]
                             < entry["seconds"]["default"] else torch.contiguous_format)
    torch.testing.assert_close(measured, reference, atol=1e-5, rtol=0)


def test_bf16_measured_slower_keeps_the_users_choice_and_warns_once(monkeypatch, caplog):
    model = tiny_model().to_device("cpu", "bf16")
    fake_timings(monkeypatch, default=1.0, lever=2.0, fp32=1.0, bf16=3.5)
    with caplog.at_level(logging.WARNING, logger="genzoo"):
        model.sample(2, steps=2)
        model.sample(2, steps=2)
    assert model.autocast_dtype == torch.bfloat16  # asked for, so kept
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("bf16 measured 3.5x slower than fp32")


def test_cli_sample_in_bf16_prints_the_one_warning_line(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from genzoo.cli import cli
    tiny_model().save_pretrained(tmp_path / "m")
    fake_timings(monkeypatch, default=1.0, lever=2.0, fp32=1.0, bf16=4.0)
    out = CliRunner().invoke(cli, ["sample", str(tmp_path / "m"), "-n", "2", "--dtype", "bf16",
                                   "--steps", "2", "-o", str(tmp_path / "s.png")])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stderr.splitlines() if "slower than fp32" in line]
    assert lines == [f"bf16 measured 4.0x slower than fp32 on this CPU ({levers.cpu_model()}): "
                     "--dtype fp32 is faster here"]
    assert "slower" not in out.stdout


# ---- benchmarks record the machine beside the figures ------------------------------------
def test_benchmarks_name_the_cpu_and_its_lever_flags(monkeypatch):
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import run
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 fma avx512f "
               "avx512_bf16 sse4_2\n")
    assert run.cpu_flags(cpuinfo) == ["avx2", "fma", "avx512f", "avx512_bf16"]
    meta = run.machine_meta()
    assert meta["cpu"].startswith(levers.cpu_model()) and meta["cpu_flags"] == run.cpu_flags()
    line = run.machine_line({**meta, "cpu": "AMD EPYC 9654, 2 cores",
                             "cpu_flags": ["avx512_bf16"]})
    assert line.startswith("Measured on AMD EPYC 9654, 2 cores (lever flags: avx512_bf16;")
    fake_timings(monkeypatch, default=2.0, lever=1.0)
    levers.use_lever("net/batch8/channels-last/fp32", lambda: None, lambda: None)
    (decision,) = run.lever_decisions()
    assert run.lever_lines([decision]) == ["- lever net/batch8/channels-last/fp32: lever "
                                           "1000.0 ms, default 2000.0 ms per run (lever 2.00x "
                                           "faster)"]
