"""Evaluation of audio: the ``logmel`` feature net (its filterbank and STFT against
independent oracles), feature nets given the samples' metadata, the reference set read by the
family's own loader (a WAV folder, an (N, 1, T) ``.npz``), and ``genzoo eval`` of an audio
model end to end (figures, ``--json``, ``--write-card``, one-line refusals)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from _notes import notes_plugin  # noqa: F401 - the fixture
from genzoo.cli import cli
from genzoo.errors import DataError, OptionError
from genzoo.modalities.audio import AudioModality
from genzoo.eval.logmel import (LogMelFeatureNet, hz_to_mel, log_mel, mel_filterbank,
                                mel_to_hz, stft_sizes)
from genzoo.eval.metrics import evaluate
from genzoo.model import GenerativeModel
from genzoo.options import Option

RATE = 8000


def _centres(sample_rate: int, n_mels: int = 40) -> torch.Tensor:
    """The mel filters' centre frequencies in Hz."""
    mels = torch.linspace(float(hz_to_mel(0.0)), float(hz_to_mel(sample_rate / 2)), n_mels + 2,
                          dtype=torch.float64)
    return mel_to_hz(mels)[1:-1]


# ---- the filterbank and the spectrogram ----------------------------------------------------
def test_the_htk_mel_scale():
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.02)  # the scale's anchor
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2))
    freqs = torch.tensor([0.0, 55.0, 440.0, 3999.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(freqs)), freqs)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_filters_peak_on_their_centres_and_sum_to_one_between(rate):
    n_fft, _, _ = stft_sizes(rate)
    fb = mel_filterbank(n_fft // 2 + 1, rate).double()
    freqs = torch.linspace(0, rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    centres = _centres(rate)
    assert fb.shape == (n_fft // 2 + 1, 40) and bool((fb >= 0).all())
    assert bool((fb.sum(0) > 0).all())  # no empty band at these rates
    peaks = freqs[fb.argmax(0)]  # each filter's largest weight: a bin beside its centre
    spacing = freqs[1] - freqs[0]
    assert bool(((peaks - centres).abs() < spacing).all())
    assert bool((peaks[1:] > peaks[:-1]).all())  # centres rise, band after band
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    assert torch.allclose(fb.sum(1)[inside], torch.ones(int(inside.sum()), dtype=torch.float64),
                          atol=1e-5)


@pytest.mark.parametrize("rate,band", [(8000, 6), (8000, 17), (8000, 30), (8000, 38),
                                       (16000, 12), (16000, 35)])
def test_a_pure_tone_lands_in_its_mel_band(rate, band):
    freq = float(_centres(rate)[band])
    t = torch.arange(rate) / rate
    tone = (0.5 * torch.sin(2 * math.pi * freq * t))[None]
    spectrum = log_mel(tone, rate).mean(-1)[0]
    assert int(spectrum.argmax()) == band
    assert float(spectrum[band] - spectrum[(band + 5) % 40]) > 2  # 20 dB above a far band


def test_filterbank_equals_torchaudio():
    functional = pytest.importorskip("torchaudio.functional")
    for rate, n_freqs in [(8000, 129), (16000, 257), (22050, 513)]:
        theirs = functional.melscale_fbanks(n_freqs, 0.0, rate / 2, 40, rate, None, "htk")
        assert torch.allclose(mel_filterbank(n_freqs, rate), theirs, atol=1e-4)


def test_log_mel_equals_a_numpy_stft():
    """The spectrogram from numpy's rfft of reflect-padded, Hann-windowed frames."""
    g = torch.Generator().manual_seed(0)
    waves = torch.rand(2, 3000, generator=g) * 2 - 1
    n_fft, win, hop = stft_sizes(RATE)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    window = np.pad(window, ((n_fft - win) // 2, n_fft - win - (n_fft - win) // 2))
    fb = mel_filterbank(n_fft // 2 + 1, RATE).double().numpy()
    for i, wave in enumerate(waves.double().numpy()):
        padded = np.pad(wave, n_fft // 2, mode="reflect")
        frames = np.stack([padded[s:s + n_fft] for s in range(0, len(padded) - n_fft + 1, hop)])
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
        want = np.log10(power @ fb + 1e-5).T
        got = log_mel(waves[i:i + 1], RATE)[0].double().numpy()
        assert got.shape == want.shape
        assert np.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_logmel_net_uses_the_sample_rate_and_refuses_bad_batches_in_one_line():
    net = LogMelFeatureNet()
    waves = torch.rand(3, 2, 4000) * 2 - 1
    feats, probs = net(waves, meta={"sample_rate": 8000})
    assert feats.shape == (3, 120) and probs is None and bool(torch.isfinite(feats).all())
    assert not torch.allclose(feats, net(waves, meta={"sample_rate": 16000})[0])
    silent = net(torch.zeros(2, 1, 4000), meta={"sample_rate": 8000})[0]
    assert torch.allclose(silent[:, :40], torch.full((2, 40), -5.0))  # log10 of the floor
    for batch, meta, match in [(torch.rand(2, 1, 28, 28), {"sample_rate": 8000}, "images"),
                               (waves, {}, "sample_rate"), (waves, None, "sample_rate"),
                               (waves, {"sample_rate": True}, "sample_rate")]:
        with pytest.raises(DataError, match=match) as e:
            net(batch, meta=meta)
        assert "\n" not in str(e.value)


def test_feature_nets_get_metadata_only_when_they_take_it():
    from genzoo.eval.features import measure
    seen = []

    class Old:  # written before metadata existed: called as before
        def __call__(self, images):
            seen.append(("old", images.shape))
            return images.flatten(1), None

    class New:
        def __call__(self, batch, meta=None):
            seen.append(("new", dict(meta)))
            return batch.flatten(1), None
    x = torch.zeros(2, 1, 4)
    measure(Old(), x, {"sample_rate": 8000})
    measure(New(), x, {"sample_rate": 8000})
    assert seen == [("old", (2, 1, 4)), ("new", {"sample_rate": 8000})]


def test_reference_stats_key_the_metadata_and_keep_image_keys(tmp_path, monkeypatch):
    from genzoo.eval.refstats import CACHE_VERSION, images_digest, reference_stats
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    net = LogMelFeatureNet()
    waves = torch.rand(4, 1, 2000) * 2 - 1
    at8 = reference_stats(waves, "w", net, meta={"sample_rate": 8000})
    at16 = reference_stats(waves, "w", net, meta={"sample_rate": 16000})
    assert at8.key != at16.key and not np.allclose(at8.mu, at16.mu)
    assert reference_stats(waves, "w", net, meta={"sample_rate": 8000}).cached

    class Plain:
        name, key = "plain", "plain-v1"

        def __call__(self, images):
            return images.flatten(1), None
    images = torch.rand(3, 1, 2, 2)
    plain = reference_stats(images, "img", Plain(), meta={})
    assert plain.key == hashlib.sha256(
        f"v{CACHE_VERSION}|plain-v1|{images_digest(images)}".encode()).hexdigest()


# ---- evaluating an audio model ---------------------------------------------------------------
class Tones(GenerativeModel):
    """A stand-in audio family: decaying sine tones of a random pitch (or silence), with its
    own loader; ``prepare_data("synthetic")`` makes real tones from other seeds."""

    arch, family, modality = "test-tones", "test", "audio"
    sample_defaults = {"silent": False}
    sample_options = (Option("silent", "bool", False, "make silence"),)
    eval_defaults = {"n": 48, "reference": "synthetic", "feature": "logmel"}
    data_help = "'synthetic' or a tensor (N, 1, T)"

    def __init__(self, config=None):
        super().__init__(config or {"sample_rate": RATE})
        self.p = torch.nn.Parameter(torch.zeros(1))

    def generate(self, generators, silent=False):
        t = torch.arange(2000) / RATE
        out = []
        for g in generators:
            freq = 200 + 800 * float(torch.rand((), generator=g))
            wave = 0.6 * torch.sin(2 * math.pi * freq * t) * torch.exp(-4 * t)
            out.append(wave[None] * (0.0 if silent else 1.0))
        return torch.stack(out)

    def prepare_data(self, data):
        if isinstance(data, torch.Tensor):
            return data
        if data == "synthetic":
            return self.generate([torch.Generator().manual_seed(10_000 + i) for i in range(64)])
        raise DataError(f"{data!r}: tones data is {self.data_help}")


TIMING = {"samples_per_s", "sample_seconds"}


def test_eval_of_an_audio_model_is_repeatable_and_silence_scores_worse(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    first = evaluate(Tones())
    again = evaluate(Tones())
    assert {k: v for k, v in first.items() if k not in TIMING} == \
        {k: v for k, v in again.items() if k not in TIMING}
    assert first["feature"] == "logmel" and first["reference"] == "synthetic"
    assert first["reference_n"] == 64 and first["sample_rate"] == RATE and first["n"] == 48
    silent = evaluate(Tones(), silent=True)
    assert silent["fd"] > 10 * first["fd"] and silent["kid"] > first["kid"]
    assert first["precision"] > 0.5 and first["recall"] > 0.5
    assert silent["precision"] == 0.0 and silent["recall"] == 0.0
    other = evaluate(Tones(), seed=1)
    assert other["fd"] != first["fd"]  # the seed is what draws the samples


def test_wav_folder_and_npz_are_reference_sets_through_the_familys_loader(notes_plugin, tmp_path,
                                                                          monkeypatch):
    import genzoo
    from genzoo.modalities.audio import wav_bytes
    from genzoo_notes.model import synthetic_notes
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path / "home"))
    model = genzoo.load("notes-tiny")
    waves = synthetic_notes(model.config, n=12)
    folder = tmp_path / "wavs"
    folder.mkdir()
    for i, wave in enumerate(waves):
        (folder / f"{i:02d}.wav").write_bytes(wav_bytes(wave, RATE))
    quantised = torch.round(waves * 32767) / 32767  # what the 16-bit WAVs hold
    np.savez(tmp_path / "ref.npz", audios=quantised.numpy(), sample_rate=RATE)
    by_folder = evaluate(model, n=16, data=str(folder))
    by_npz = evaluate(model, n=16, data=str(tmp_path / "ref.npz"))
    assert by_folder["reference"] == str(folder) and by_folder["reference_n"] == 12
    assert by_npz["reference"] == str(tmp_path / "ref.npz") and by_npz["reference_n"] == 12
    assert by_folder["feature"] == "logmel" and math.isfinite(by_folder["fd"])
    assert by_npz["fd"] == pytest.approx(by_folder["fd"], rel=1e-4)
    default = evaluate(model, n=16)  # eval_defaults: the synthetic notes
    assert default["reference"] == "synthetic" and default["reference_n"] == 48


def test_genzoo_eval_of_an_audio_model_prints_json_and_writes_its_card(notes_plugin, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["eval", "notes-tiny", "--json", "--write-card"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert {"fd", "kid", "precision", "recall"} <= set(report)
    assert report["feature"] == "logmel" and report["sample_rate"] == RATE
    card = yaml.safe_load(notes_plugin.read_text())["models"][0]
    assert card["metrics"]["fd"] == pytest.approx(report["fd"], rel=1e-4)
    assert card["metrics"]["feature"] == "logmel" and card["metrics"]["reference"] == "synthetic"
    table = CliRunner().invoke(cli, ["eval", "notes-tiny", "-n", "8"])
    assert table.exit_code == 0 and "precision" in table.output


@pytest.mark.parametrize("args,message", [
    (["--data", "nowhere"], "nowhere: no such file or folder; notes data is 'synthetic'"),
    (["--data", "{npz_2d}"], "audios shaped (6, 4000); notes data is (N, 1, T)"),
    (["--data", "{npz_loud}"], "audio values must be finite and in [-1, 1]"),
    (["--feature", "mnist"], "feature network 'mnist' takes images of shape [1, 28, 28]"),
    (["--feature", "timm:resnet18"], "feature network 'timm:resnet18' measures images"),
    (["--feature", "nope"], "unknown feature network 'nope'"),
])
def test_bad_reference_data_or_feature_is_one_line(notes_plugin, tmp_path, monkeypatch, args,
                                                   message):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    np.savez(tmp_path / "flat.npz", audios=np.zeros((6, 4000), np.float32))
    np.savez(tmp_path / "loud.npz", audios=np.full((6, 1, 4000), 3.0, np.float32))
    args = [a.format(npz_2d=tmp_path / "flat.npz", npz_loud=tmp_path / "loud.npz") for a in args]
    result = CliRunner().invoke(cli, ["eval", "notes-tiny", *args])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert message in result.output


def test_what_the_evaluator_itself_refuses_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))

    class NoDefaults(Tones):
        eval_defaults = {}

    class Crashing(Tones):
        def prepare_data(self, data):
            raise KeyError("boom")

    def without_default_feature(call):
        with monkeypatch.context() as m:
            m.setattr(AudioModality, "default_feature", None)
            return call()

    class Returns(Tones):
        given = None

        def prepare_data(self, data):
            return Returns.given
    cases = [
        (lambda: evaluate(NoDefaults(), n=4, feature="logmel"), OptionError,
         "test-tones has no default reference set; pass --data (data=) 'synthetic' or a tensor"),
        # no feature named: the audio modality's default (logmel) is used, so what is
        # missing next is the reference set ...
        (lambda: evaluate(NoDefaults(), n=4), OptionError,
         "test-tones has no default reference set; pass --data (data=) 'synthetic' or a tensor"),
        # ... and a modality that names no default feature net is refused in one line
        (lambda: without_default_feature(lambda: evaluate(NoDefaults(), n=4)), OptionError,
         "test-tones names no feature network for its audios"),
        (lambda: evaluate(Crashing(), n=4), DataError,
         "synthetic: test-tones's loader could not read it (KeyError: 'boom')"),
    ]
    for value, match in [(torch.zeros(1, 1, 100), "needs at least 2 audios, it has 1"),
                         (torch.zeros(4, 100), "shaped (4, 100); audios are (n, channels, T)"),
                         (torch.full((4, 1, 100), math.nan), "NaN or Inf"),
                         (torch.full((4, 1, 100), 2.0), "outside [-1, 1]"),
                         (np.zeros((4, 1, 100)), "gave ndarray, not a tensor of audios")]:
        cases.append((lambda v=value: (setattr(Returns, "given", v), evaluate(Returns(), n=4)),
                      DataError, match))
    for call, err, match in cases:
        with pytest.raises(err) as e:
            call()
        assert match in str(e.value) and "\n" not in str(e.value)

    class Rated(torch.utils.data.Dataset):
        sample_rate = 16000

        def __len__(self):
            return 4

        def __getitem__(self, idx):
            return torch.zeros(len(idx), 1, 100)
    Returns.given = Rated()
    with pytest.raises(DataError, match="sample_rate is 16000, the model's is 8000"):
        evaluate(Returns(), n=4)


def test_a_labelled_audio_dataset_gives_the_family_its_waves_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))
    seen = {}

    class Pairs:  # indexes as (waves, labels), as a labelled training set does
        def __init__(self, waves):
            self.waves, self.labels, self.source = waves, torch.arange(len(waves)) % 3, "pairs"

        def __len__(self):
            return len(self.waves)

        def __getitem__(self, idx):
            return self.waves[idx], self.labels[idx]

    class Labelled(Tones):
        def prepare_data(self, data):
            return Pairs(super().prepare_data(data))

        def evaluate_metrics(self, reference, *, seed=0, labels=None):
            seen.update(reference=reference, labels=labels)
            return {"ref_peak": float(reference.abs().max())}
    out = evaluate(Labelled(), n=8)
    assert out["reference"] == "pairs" and out["reference_n"] == 64
    assert seen["reference"].shape == (64, 1, 2000) and seen["labels"].tolist()[:4] == [0, 1, 2, 0]
    assert out["ref_peak"] == pytest.approx(float(seen["reference"].abs().max()))


def test_write_card_into_an_audio_model_folder_records_figures_not_settings(notes_plugin,
                                                                            tmp_path,
                                                                            monkeypatch):
    import genzoo
    from huggingface_hub import ModelCard
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path / "home"))
    folder = tmp_path / "mine"
    genzoo.load("notes-tiny").save_pretrained(folder)
    result = CliRunner().invoke(cli, ["eval", str(folder), "-n", "16", "--write-card", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    results = {r.metric_type: r for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert results["fd"].metric_value == pytest.approx(report["fd"], rel=1e-4)
    assert {"kid", "precision", "recall"} <= set(results)
    assert "sample_rate" not in results  # how it was measured, not a figure
    assert results["fd"].metric_args["sample_rate"] == RATE


def test_a_family_without_a_loader_is_measured_against_an_npz_genzoo_wrote(tmp_path,
                                                                           monkeypatch):
    from genzoo.errors import GenzooError
    from genzoo.samples import Samples
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))

    class CannotTrain(GenzooError):
        pass

    class NoLoader(Tones):  # like AudioLDM: no training data, so no loader
        eval_defaults = {"n": 16, "feature": "logmel"}
        data_help = ""

        def prepare_data(self, data):
            raise CannotTrain("test-tones cannot be finetuned")
    waves = Tones().prepare_data("synthetic")
    Samples(waves, "audio", {"sample_rate": RATE}).save(tmp_path / "ref.npz")
    out = evaluate(NoLoader(), data=str(tmp_path / "ref.npz"))
    assert out["reference_n"] == 64 and out["sample_rate"] == RATE
    assert out["fd"] == pytest.approx(evaluate(Tones(), n=16)["fd"], rel=1e-4)  # same notes
    Samples(waves, "audio", {"sample_rate": 16000}).save(tmp_path / "fast.npz")
    with pytest.raises(DataError, match="sample_rate is 16000, the model's is 8000"):
        evaluate(NoLoader(), data=str(tmp_path / "fast.npz"))
    np.savez(tmp_path / "other.npz", images=np.zeros((4, 1, 8, 8), np.float32))
    for data in [str(tmp_path / "other.npz"), str(tmp_path), "synthetic"]:
        with pytest.raises(CannotTrain):  # not such an .npz: the family's own refusal stands
            evaluate(NoLoader(), data=data)
    with pytest.raises(OptionError, match=r"an \.npz as genzoo writes samples"):
        evaluate(NoLoader())


def test_the_modalitys_default_feature_serves_a_family_that_names_none(tmp_path, monkeypatch):
    from genzoo.modalities.audio import AudioModality
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))

    class Unnamed(Tones):
        eval_defaults = {"n": 16, "reference": "synthetic"}
    monkeypatch.setattr(AudioModality, "default_feature", None, raising=False)
    with pytest.raises(OptionError, match="names no feature network"):
        evaluate(Unnamed())
    monkeypatch.setattr(AudioModality, "default_feature", "logmel", raising=False)
    assert evaluate(Unnamed())["feature"] == "logmel"


def test_a_family_that_never_wrote_a_loader_reads_genzoos_npz(tmp_path, monkeypatch):
    from genzoo.samples import Samples
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path))

    class Default(Tones):  # GenerativeModel's prepare_data: the image loader, no image_shape
        prepare_data = GenerativeModel.prepare_data
    Samples(Tones().prepare_data("synthetic"), "audio", {"sample_rate": RATE}).save(
        tmp_path / "ref.npz")
    assert evaluate(Default(), n=8, data=str(tmp_path / "ref.npz"))["reference_n"] == 64
    with pytest.raises(DataError, match=r"could not read it \(KeyError: 'image_shape'\)"):
        evaluate(Default(), n=8, data=str(tmp_path))
