"""End to end: a third-party *audio* family (tests/notes_plugin, installed for real by the
``notes_plugin`` fixture) samples, writes WAV files, takes its declared option on the command
line and finetunes on sound — with no change to genzoo's core."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli import one_line_error, run
from _notes import notes_plugin, notes_plugin_class  # noqa: F401  (the fixtures)
from genzoo.testing import Conformance

RATE, T = 8000, 4000  # the bundled model: 0.5 s at 8 kHz


def expected(n: int, **options) -> torch.Tensor:
    """What the API samples (seed 0), quantised to 16-bit PCM like a WAV file."""
    import genzoo
    data = genzoo.load("notes-tiny").sample(n, seed=0, **options).data
    return torch.round(data * 32767) / 32767


def read(path: Path) -> tuple[torch.Tensor, int]:
    """A WAV file, checked to be 16-bit PCM mono at 8 kHz, as ((1, T), rate)."""
    from genzoo.modalities.audio import read_wav
    with wave.open(str(path), "rb") as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, RATE)
    return read_wav(path)


def test_sample_writes_one_wav_of_every_note(notes_plugin, tmp_path):
    out = tmp_path / "out.wav"
    result = run("sample", "notes-tiny", "-n", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    data, rate = read(out)
    gap = RATE // 2  # the audio writer's 0.5 s of silence between samples
    assert rate == RATE and data.shape == (1, 3 * T + 2 * gap)
    want = expected(3)
    for i in range(3):
        got = data[:, i * (T + gap):i * (T + gap) + T]
        assert torch.allclose(got, want[i], atol=1.5 / 32767)
    assert float(data.min()) < -0.05 < 0.05 < float(data.max())  # the negative half survives
    assert not data[:, T:T + gap].any()


def test_sample_to_a_folder_and_an_npz(notes_plugin, tmp_path):
    folder = tmp_path / "notes"
    assert run("sample", "notes-tiny", "-n", "3", "-o", f"{folder}/").exit_code == 0
    files = sorted(folder.iterdir())
    assert [f.suffix for f in files] == [".wav"] * 3
    want = expected(3)
    for i, f in enumerate(files):
        data, _ = read(f)
        assert torch.allclose(data, want[i], atol=1.5 / 32767)
    npz = tmp_path / "x.npz"
    assert run("sample", "notes-tiny", "-n", "3", "-o", str(npz)).exit_code == 0
    with np.load(npz, allow_pickle=False) as z:
        assert int(z["sample_rate"]) == RATE and z["audios"].shape == (3, 1, T)
        assert torch.allclose(torch.from_numpy(z["audios"]), want, atol=1 / 32767)


def test_pitch_is_a_flag_from_the_declaration(notes_plugin, tmp_path):
    import genzoo
    model = genzoo.load("notes-tiny")
    out = tmp_path / "p.npz"
    assert run("sample", "notes-tiny", "-n", "4", "--pitch", "3", "-o", str(out)).exit_code == 0
    with np.load(out, allow_pickle=False) as z:
        audios = torch.from_numpy(z["audios"])
    assert model.estimate_pitch(audios).tolist() == [3, 3, 3, 3]
    drawn = model.sample(4, seed=0).data
    assert model.estimate_pitch(drawn).tolist() != [3, 3, 3, 3]
    per_sample = tmp_path / "q.npz"
    assert run("sample", "notes-tiny", "-n", "2", "--pitch", "5,9", "-o",
               str(per_sample)).exit_code == 0
    with np.load(per_sample, allow_pickle=False) as z:
        assert model.estimate_pitch(torch.from_numpy(z["audios"])).tolist() == [5, 9]
    line = one_line_error(run("sample", "notes-tiny", "-n", "2", "--pitch", "12"))
    assert "pitch" in line and "11" in line
    info = json.loads(run("info", "notes-tiny", "--json").stdout)
    assert {o["name"]: o["max"] for o in info["options"]}["pitch"] == 11
    assert info["modality"] == "audio" and "modality:  audio" in run("info", "notes-tiny").output


def test_sample_i_depends_only_on_seed_and_i(notes_plugin):
    import genzoo
    model = genzoo.load("notes-tiny")
    five = model.sample(5, seed=7).data
    assert torch.allclose(five[:3], model.sample(3, seed=7, batch_size=2).data, atol=1e-6)
    assert not torch.allclose(five[0], five[1])
    mine = model.estimate_pitch(five[:2]).tolist()  # asking for its own pitch gives sample i
    assert torch.allclose(model.sample(2, seed=7, pitch=mine).data, five[:2], atol=1e-6)


def test_finetune_on_synthetic_notes_and_resume(notes_plugin, tmp_path):
    import genzoo
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = ("finetune", "notes-tiny", "--data", "synthetic", "--steps", "4", "--lr", "0.01")
    assert run(*args, "--out", str(whole)).exit_code == 0
    first = run(*args, "--out", str(parts), "--stop-after", "2")
    assert first.exit_code == 0, first.output
    resumed = run(*args, "--out", str(parts), "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = genzoo.load(str(whole)), genzoo.load(str(parts))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    base = genzoo.load("notes-tiny")
    assert not torch.equal(a.net[0].weight, base.net[0].weight)  # it trained
    assert a.sample(2, seed=0).meta["sample_rate"] == RATE


def test_finetune_reads_the_wavs_it_wrote(notes_plugin, tmp_path):
    """Sound out, sound in: a folder of sampled WAVs and an .npz are training data."""
    folder, npz = tmp_path / "wavs", tmp_path / "a.npz"
    assert run("sample", "notes-tiny", "-n", "4", "-o", f"{folder}/").exit_code == 0
    assert run("sample", "notes-tiny", "-n", "4", "-o", str(npz)).exit_code == 0
    for data in (folder, npz):
        result = run("finetune", "notes-tiny", "--data", str(data), "--steps", "2",
                     "--out", str(tmp_path / f"run-{data.name}"), "--json")
        assert result.exit_code == 0, result.output
    import genzoo
    model = genzoo.load("notes-tiny")
    assert len(model.prepare_data(folder)) == 4 == len(model.prepare_data(npz))


def test_finetune_bad_data_is_one_line(notes_plugin, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    stereo = tmp_path / "stereo"
    stereo.mkdir()
    with wave.open(str(stereo / "a.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(b"\0" * 400)
    no_audios = tmp_path / "x.npz"
    np.savez(no_audios, images=np.zeros((2, 1, 8, 8), np.float32))
    loud = tmp_path / "loud.npz"
    np.savez(loud, audios=np.full((2, 1, 100), 3.0, np.float32))
    cases = {str(tmp_path / "missing"): "no such file", str(empty): "no .wav files",
             str(stereo): "mono at 8000 Hz", str(no_audios): "no 'audios' array",
             str(loud): "in [-1, 1]", "mnist": "no such file"}
    for data, says in cases.items():
        line = one_line_error(run("finetune", "notes-tiny", "--data", data, "--steps", "2",
                                  "--out", str(tmp_path / "run")))
        assert says in line, line
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_picture_suffix_lists_the_audio_writers(notes_plugin, tmp_path):
    line = one_line_error(run("sample", "notes-tiny", "-n", "2", "-o", str(tmp_path / "x.png")))
    assert ".wav" in line and ".npz" in line, line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.usefixtures("notes_plugin_class")
class TestNotesConformance(Conformance):
    """genzoo's conformance kit on the third-party audio family, as its authors would run it."""

    arch = "notes-harmonic"
    config = {"hidden": 16}
    data = "synthetic"  # the family's own notes: a spectral loss needs pitched sound
    finetune_options = {"lr": 0.01}


def test_served_wav_is_what_sample_writes(notes_plugin, tmp_path):
    """genzoo serve (in-process) answers with the modality's one-sample format, audio/wav:
    the bytes ``genzoo sample -n 1 -o x.wav`` writes."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient
    from genzoo.serve.app import ServeConfig, create_app
    body = {"n": 1, "seed": 3, "options": {"pitch": 5}, "format": "wav"}
    with TestClient(create_app(ServeConfig(models="notes-tiny"))) as client:
        served = client.post("/v1/models/notes-tiny/samples", json=body)
        bad = client.post("/v1/models/notes-tiny/samples", json={**body, "format": "png"})
    assert served.status_code == 200 and served.headers["content-type"] == "audio/wav"
    assert run("sample", "notes-tiny", "-n", "1", "--seed", "3", "--pitch", "5", "-o",
               str(tmp_path / "x.wav")).exit_code == 0
    assert served.content == (tmp_path / "x.wav").read_bytes()
    assert bad.status_code == 422 and "wav" in bad.text


def test_cards_and_help_say_audio(notes_plugin, tmp_path):
    """A finetune's progress samples are WAVs; its folder's README is an audio model's card
    (no Hub task fits a pitch-conditioned synthesiser: the audio-generation tag, a WAV in its
    usage); and
    ``genzoo finetune notes-tiny --help`` says what --data the family reads."""
    assert run("finetune", "notes-tiny", "--data", "synthetic", "--steps", "2", "--sample-every",
               "2", "--out", str(tmp_path / "run")).exit_code == 0
    progress, _ = read(tmp_path / "run" / "samples" / "step-0000002.wav")  # sounds, not a PNG
    assert progress.abs().max() > 0.01
    readme = (tmp_path / "run" / "README.md").read_text()
    front = readme.split("---")[1]
    assert "pipeline_tag" not in front and "- audio-generation" in front
    assert "- music" in front and "- synthesizer" in front  # the family's own card_fields
    assert "library_name: genzoo" in front and 'samples.save("samples.wav")' in readme
    assert "unconditional-image-generation" not in readme
    helped = run("finetune", "notes-tiny", "--help")
    assert helped.exit_code == 0 and "16-bit mono WAV" in " ".join(helped.output.split())


def test_a_plugins_own_card_pipeline_tag_wins(notes_plugin, tmp_path):
    """A plugin's catalog card may claim the Hub task itself (``pipeline_tag``): a saved copy's
    README carries it, over what the modality would say; a non-string is refused in one line."""
    import yaml
    from genzoo.catalog import registry
    catalog = yaml.safe_load(notes_plugin.read_text())
    catalog["models"][0]["pipeline_tag"] = "text-to-audio"
    notes_plugin.write_text(yaml.safe_dump(catalog))
    registry.reset()
    assert run("finetune", "notes-tiny", "--data", "synthetic", "--steps", "1", "--out",
               str(tmp_path / "run")).exit_code == 0
    front = (tmp_path / "run" / "README.md").read_text().split("---")[1]
    assert "pipeline_tag: text-to-audio" in front
    catalog["models"][0]["pipeline_tag"] = ["text-to-audio"]
    notes_plugin.write_text(yaml.safe_dump(catalog))
    registry.reset()
    listed = run("plugins")
    assert "pipeline_tag must be a string" in listed.output


def eval_json(*args: str) -> dict:
    """``genzoo eval ARGS --json``, checked to succeed."""
    result = run("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_on_its_own_reference(notes_plugin, tmp_path):
    """``genzoo eval notes-tiny`` uses the family's declared reference (its synthetic notes)
    and feature net (log-mel); a folder of WAVs is a reference too, read by the family."""
    report = eval_json("notes-tiny")
    assert (report["n"], report["reference"], report["reference_n"]) == (32, "synthetic", 48)
    assert report["feature"] == "logmel" and report["sample_rate"] == RATE
    assert report["fd"] > 1  # the untrained model's notes are not the data's
    folder = tmp_path / "ref"
    assert run("sample", "notes-tiny", "-n", "8", "-o", f"{folder}/").exit_code == 0
    same = eval_json("notes-tiny", "-n", "8", "--data", str(folder))
    assert same["reference_n"] == 8 and same["fd"] < 1e-3  # its own samples: no distance
    line = one_line_error(run("eval", "notes-tiny", "--data", str(tmp_path / "none")))
    assert "no such file" in line and "synthetic" in line


@pytest.mark.slow
def test_training_moves_notes_toward_the_data(notes_plugin, tmp_path):
    """Finetuned on its synthetic notes for 100 steps, the family's samples come much
    nearer them in log-mel space (measured: FD 22.8 -> 5.0 on a 2-core Xeon)."""
    before = eval_json("notes-tiny")["fd"]
    assert run("finetune", "notes-tiny", "--data", "synthetic", "--steps", "100", "--lr",
               "0.01", "--out", str(tmp_path / "run")).exit_code == 0
    after = eval_json(str(tmp_path / "run"))["fd"]
    assert after < before / 2, (before, after)
