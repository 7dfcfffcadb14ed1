"""Fault injection, modalities: a model that makes neither images nor text (audio, from the
third-party notes family and tests/_tiny.TinyAudio) meets every output path of ``genzoo
sample`` and ``genzoo finetune``. Each former traceback is one line (exit 1) saying what the
modality takes, written before any sampling so nothing is half-written; the defaults come
from the modality; a failed finetune leaves no half-made run folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _cli import one_line_error, run
from _notes import notes_plugin  # noqa: F401 - fixture
from _tiny import TinyAudio, TinyModel, tiny_data, tiny_waves
from genzoo.engine.train import finetune
from genzoo.errors import DataError, OptionError, TrainingDivergedError
from genzoo.modalities.audio import read_wav
from genzoo.names import CHECKPOINTS_DIR

RATE, T = 8000, 4000  # notes-tiny: 0.5 s at 8 kHz


# ---- genzoo sample ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.png", "x.txt", "x.jsonl", "x.jpg", "x.mp3"])
def test_a_suffix_audio_has_no_writer_for_is_one_line(notes_plugin, tmp_path, name, monkeypatch):
    sampled = []
    monkeypatch.setattr("genzoo.model.GenerativeModel.iter_samples",
                        lambda *a, **k: sampled.append(1) or iter(()))
    out = tmp_path / "out"
    out.mkdir()
    line = one_line_error(run("sample", "notes-tiny", "-n", "2", "-o", str(out / name)))
    assert line == (f"Error: cannot save audios as {name!r}: use .wav (every sample in one "
                    "file), .npz (the array) or a folder/ (one .wav per sample)")
    assert not sampled, "the output was refused only after sampling"
    assert sorted(out.iterdir()) == []  # nothing written, not even a temp file


def test_a_folder_gets_one_wav_per_sample_and_a_file_in_the_way_is_one_line(notes_plugin,
                                                                            tmp_path):
    result = run("sample", "notes-tiny", "-n", "2", "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["00000.wav", "00001.wav"]
    wave, rate = read_wav(files[1])
    assert rate == RATE and wave.shape == (1, T) and float(wave.min()) < 0
    (tmp_path / "file").write_text("mine\n")
    line = one_line_error(run("sample", "notes-tiny", "-n", "2", "-o", f"{tmp_path / 'file'}/"))
    assert "it is a file" in line
    assert (tmp_path / "file").read_text() == "mine\n"


def test_without_n_or_o_the_modality_decides(notes_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("sample", "notes-tiny", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 4 and summary["written"] == ["notes-tiny.wav"]  # audio's default_n
    assert summary["meta"]["sample_rate"] == RATE and "texts" not in summary
    wave, rate = read_wav(tmp_path / "notes-tiny.wav")
    assert rate == RATE and wave.shape == (1, 4 * T + 3 * RATE // 2)


def test_a_modality_that_cannot_be_printed_needs_o():
    from genzoo.cli.model import _default_out
    from genzoo.samples import Modality

    class Fields(Modality):
        name, plural, default_output = "fields", "fields", None

    with pytest.raises(OptionError, match=r"^fields cannot be printed: name a file or folder "
                       r"with -o \(it takes a folder/\)$"):
        _default_out(Fields(), "some-model")


# ---- genzoo finetune --------------------------------------------------------------------------
def test_sample_every_writes_wavs(notes_plugin, tmp_path):
    out = tmp_path / "run"
    result = run("finetune", "notes-tiny", "--data", "synthetic", "--steps", "2",
                 "--sample-every", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted((out / "samples").iterdir())
    assert [f.name for f in files] == ["step-0000001.wav", "step-0000002.wav"]
    wave, rate = read_wav(files[0])
    assert rate == RATE and wave.shape == (1, 16 * T + 15 * RATE // 2)  # 16 notes, with gaps
    assert float(wave.min()) < 0


def test_samples_of_a_modality_without_writers_go_to_a_folder(tmp_path):
    from genzoo.engine.parts import samples_path
    from genzoo.samples import Modality, modality
    assert samples_path(tmp_path / "step-1", modality("audio")) == tmp_path / "step-1.wav"
    assert samples_path(tmp_path / "step-1", modality("image")) == tmp_path / "step-1.png"
    assert samples_path(tmp_path / "step-1", Modality()) == tmp_path / "step-1"


def test_a_failed_finetune_leaves_no_run_folder(notes_plugin, tmp_path):
    out = tmp_path / "run"
    line = one_line_error(run("finetune", "notes-tiny", "--data", str(tmp_path / "none"), "--steps",
                        "2", "--out", str(out)))
    assert "no such file" in line
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("finetune", "notes-tiny", "--data", "mnist", "--steps", "2", "--out",
                 str(empty)))
    assert list(empty.iterdir()) == []  # an empty folder the user made stays, empty


class Interrupted(TinyAudio):
    """TinyAudio whose third loss is a Ctrl-C (after a sample WAV has been written)."""

    calls = 0

    def training_loss(self, waves):
        type(self).calls += 1
        if type(self).calls == 3:
            raise KeyboardInterrupt
        return super().training_loss(waves)


def test_an_interrupted_run_before_its_first_checkpoint_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        finetune(Interrupted(), tiny_waves(), steps=6, out=tmp_path / "run", progress=False,
                 sample_every=1, log_every=1)
    assert Interrupted.calls == 3 and not (tmp_path / "run").exists()


def test_a_failed_run_keeps_its_checkpoints_and_an_earlier_runs_folder(tmp_path):
    out = tmp_path / "run"
    model = TinyModel({"nan_at_call": 5})
    with pytest.raises(TrainingDivergedError, match="the last good checkpoint is"):
        finetune(model, tiny_data(), steps=8, out=out, progress=False, save_every=2)
    assert (out / CHECKPOINTS_DIR / "latest").is_file()  # resumable: kept
    done = tmp_path / "done"
    finetune(TinyAudio(), tiny_waves(), steps=2, out=done, progress=False)
    before = sorted(p.name for p in done.iterdir())
    with pytest.raises(DataError):
        finetune(TinyAudio(), "not a tensor", steps=2, out=done, progress=False,
                 overwrite=True)
    assert sorted(p.name for p in done.iterdir()) == before  # an earlier run's folder stays


def test_finetune_help_says_the_family_reads_the_data(notes_plugin):
    plain = " ".join(run("finetune", "--help").output.split())
    assert "image" not in plain.split("--steps")[0] and "prepare_data reads" in plain
    named = " ".join(run("finetune", "notes-tiny", "--help").output.split())
    assert "Data of notes-tiny (--data)" in named and "16-bit mono WAV files" in named
    assert "Data of" not in " ".join(run("finetune", "no-such-model", "--help").output.split())


def test_tiny_audio_keeps_its_negative_half():
    samples = TinyAudio().sample(4, seed=0)
    assert samples.modality == "audio" and samples.meta["sample_rate"] == 8000
    assert float(samples.data.min()) < 0 < float(samples.data.max())
    assert isinstance(samples.data, torch.Tensor) and samples.data.shape == (4, 1, 32)
