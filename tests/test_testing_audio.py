"""The conformance kit on audio: it asks the model's modality for its checks (layout, range,
metadata, a writer round trip) instead of assuming images or text, its default data fits
(n, channels, T) waveforms, and audio-specific violations are caught with a message that
says what to fix. Against tests/kit_plugins (kit-audio conforms; the kit-audio-* mutants and
kit-smell do not) and the third-party notes family (tests/notes_plugin)."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo  # noqa: F401 - imported once, here: an optimizer step imports it, and
# after an in-process pytester run (which drops the modules it saw imported) a second
# import registers torch._inductor.test_operators' library twice, a RuntimeError
from _kit import kit, kit_plugin_args, kit_site  # noqa: F401 - fixtures
from _notes import notes_plugin  # noqa: F401 - fixture
from test_modality_plugin import table_plugin  # noqa: F401 - fixture (the guide's example)

from genzoo.errors import SampleError

pytest_plugins = ["pytester"]


def test_the_whole_suite_passes_an_audio_model(kit, pytester):
    pytester.makepyfile(test_mod='genzoo_arch = "kit-audio"\n')
    result = pytester.runpytest_inprocess(*kit_plugin_args(), "-q", "-rs")
    outcomes = result.parseoutcomes()
    assert not outcomes.get("failed") and not outcomes.get("error"), result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 22
    assert outcomes.get("passed", 0) >= 18, result.stdout.str()
    # skipped: the probe's 2-D gradient, no conditions, no bundled cards (and CUDA, if none)
    result.stdout.fnmatch_lines(["*audios (n, channels, T) have no 2-D field*"])


def test_default_data_is_waveforms_in_the_modalitys_range(kit, tmp_path):
    from genzoo.kit import conformance as c
    data = c.default_data(c.make_model("kit-audio", {"length": 40}), tmp_path)
    assert tuple(data.shape) == (16, 1, 40)
    assert -1 <= float(data.min()) < -0.5 and 0.5 < float(data.max()) <= 1  # both halves
    assert float(data.std()) > 0.2


def test_the_writer_round_trip_writes_readable_wavs(kit, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import writing as w
    from genzoo.modalities.audio import GAP_SECONDS, read_wav
    model = c.make_model("kit-audio", {})
    w.check_writers(model, tmp_path)
    wave, rate = read_wav(tmp_path / "kit-samples.wav")
    assert rate == 8000 and wave.shape == (1, 3 * 48 + 2 * int(GAP_SECONDS * 8000))
    one, _ = read_wav(tmp_path / "kit-samples" / "00001.wav")
    expected = model.sample(3, seed=0).data[1]
    assert torch.allclose(one, expected, atol=1 / 32767 + 1e-6) and float(one.min()) < 0


def test_an_npz_that_drops_the_sample_rate_is_caught(kit, tmp_path, monkeypatch):
    from genzoo.kit import conformance as c
    from genzoo.kit import writing as w
    from genzoo.writers import NpzWriter
    monkeypatch.setattr(NpzWriter, "close", _close_without_extra(NpzWriter.close))
    with pytest.raises(AssertionError, match="kit-samples.npz lacks sample_rate = 8000"):
        w.check_writers(c.make_model("kit-audio", {}), tmp_path)


def _close_without_extra(close):
    def patched(self):
        self.extra = {}
        return close(self)
    return patched


def test_audio_leaving_its_range_is_caught(kit):
    from genzoo.kit import conformance as c
    with pytest.raises(AssertionError, match=r"audios must lie in \[-1, 1\]; generate returned"
                       r" .*on a fresh model .*tanh"):
        c.check_sample_output(c.make_model("kit-audio-loud", {}))


def test_audio_without_its_channel_axis_is_refused_in_one_line(kit):
    from genzoo.kit import conformance as c
    with pytest.raises(SampleError, match=r"returned a tensor shaped \(3, 32\); audios are "
                       r"\(n, channels, T\) in \[-1, 1\]"):
        c.check_sample_output(c.make_model("kit-audio-flat", {}))


def test_an_unregistered_modality_fails_the_class_contract(kit):
    from genzoo.kit import conformance as c
    with pytest.raises(AssertionError, match="KitSmell.modality is 'smell', which no installed "
                       "plugin registers .*audio.*genzoo_modalities hook"):
        c.check_class_contract("kit-smell")
    c.check_class_contract("kit-audio")  # a registered one passes


def test_a_third_party_audio_family_passes_the_kit(notes_plugin, tmp_path):
    from genzoo.kit import conformance as c
    from genzoo.kit import train as t
    from genzoo.kit import writing as w
    arch = "notes-harmonic"
    c.check_class_contract(arch)
    c.check_sample_output(c.make_model(arch, {}))
    w.check_writers(c.make_model(arch, {}), tmp_path / "written")
    c.check_seeds(c.make_model(arch, {}))
    model = c.make_model(arch, {})
    data = c.default_data(model, tmp_path)  # waveforms the family's prepare_data takes
    assert tuple(data.shape) == (16, 1, 4000)
    run = t.run_finetune(model, data, tmp_path / "ft", steps=10)
    t.check_loss_lowered(run)
    with pytest.MonkeyPatch.context() as mp:
        t.check_trained_output(run, mp)


def test_the_kit_asks_a_third_partys_modality(table_plugin, tmp_path):
    """docs/plugins.md's table rows (a list modality written as CSV) pass the kit's sample,
    writer and seed checks: nothing in them assumes images, text or audio."""
    from genzoo.kit import conformance as c
    from genzoo.kit import writing as w
    c.check_class_contract("table-gauss")
    c.check_sample_output(c.make_model("table-gauss", {}))
    w.check_writers(c.make_model("table-gauss", {}), tmp_path / "written")
    assert (tmp_path / "written" / "kit-samples.csv").read_text().startswith("height,weight")
    c.check_seeds(c.make_model("table-gauss", {}))
