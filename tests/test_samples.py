"""Samples: every save format, PNG provenance, atomic writes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.errors import OptionError
from genzoo.samples import Samples


@pytest.fixture
def samples():
    imgs = torch.linspace(0, 1, 6 * 28 * 28).reshape(6, 1, 28, 28)
    return Samples(images=imgs, meta={"model": "m", "seed": 3, "sampler": "ddim", "steps": 10})


def test_png_grid_carries_provenance(tmp_path, samples):
    [path] = samples.save(tmp_path / "g.png")
    with Image.open(path) as im:
        assert im.size == (3 * 30 + 2, 2 * 30 + 2)
        assert im.text["model"] == "m" and im.text["seed"] == "3" and im.text["sampler"] == "ddim"
        assert "genzoo_version" in im.text


def test_folder_gets_one_png_per_sample(tmp_path, samples):
    files = samples.save(tmp_path / "out/")
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(6)]
    with Image.open(files[5]) as im:
        arr = np.asarray(im)
    expected = (samples.images[5, 0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(arr, expected)


def test_npz_round_trips_the_array(tmp_path, samples):
    samples.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert np.array_equal(z["images"], samples.images.numpy())


def test_texts_save_as_txt_jsonl_and_folder(tmp_path):
    s = Samples(texts=["to be", "or not"], meta={"seed": 0})
    s.save(tmp_path / "t.txt")
    s.save(tmp_path / "t.jsonl")
    s.save(tmp_path / "dir/")
    assert (tmp_path / "t.txt").read_text() == "to be\n\nor not\n"
    assert (tmp_path / "t.jsonl").read_text().count("\n") == 2
    assert (tmp_path / "dir" / "00001.txt").read_text() == "or not"


def test_unknown_suffix_is_refused_and_nothing_is_left_behind(tmp_path, samples):
    with pytest.raises(OptionError, match=r"use .png \(a grid\), .npz \(the array\) or a folder/"):
        samples.save(tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


# ---- writers asked by the modality: faults ---------------------------------------------------
def _audio(n: int = 2, meta: dict | None = None):
    return Samples(torch.rand(n, 1, 80) * 2 - 1, "audio",
                   {"sample_rate": 8000} if meta is None else meta)


@pytest.mark.parametrize("name", ["x.wav", "x.npz", "dir/"])
def test_audio_without_its_sample_rate_is_one_line_and_writes_nothing(tmp_path, name):
    from genzoo.errors import SampleError
    with pytest.raises(SampleError, match="need sample_rate") as e:
        _audio(meta={}).save(tmp_path / name)
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []


def test_an_aborted_wav_leaves_nothing_and_prints_nothing(tmp_path, monkeypatch):
    import gc
    import sys
    from genzoo.errors import SampleError
    from genzoo.writers import open_writer
    raised: list = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    writer = open_writer(tmp_path / "x.wav", 4, "audio")
    writer.write(_audio())
    with pytest.raises(SampleError, match="changed sample rate or channels"):
        writer.write(Samples(torch.zeros(2, 2, 80), "audio", {"sample_rate": 8000}))
    writer.abort()
    del writer
    gc.collect()
    assert raised == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x.wav", "x.npz"])
def test_no_samples_is_one_line_not_an_empty_file(tmp_path, name):
    from genzoo.errors import OutputError
    with pytest.raises(OutputError, match="0 of 0 samples were made"):
        _audio(0).save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_modality_that_cannot_encode_one_sample_refuses_a_folder_before_writing(tmp_path):
    from genzoo.errors import OptionError
    from genzoo.samples import Modality
    from genzoo.writers import NpzWriter, open_writer

    class Rows(Modality):
        name, plural = "rows", "rows"

        def writers(self):
            return {".npz": NpzWriter}
    with pytest.raises(OptionError, match=r"cannot save rows as 'out': use .npz \(the array\)$"):
        open_writer(tmp_path / "out", 3, Rows())
    assert list(tmp_path.iterdir()) == []


def test_generate_returning_no_tensor_is_one_line():
    import numpy as np
    from genzoo.errors import SampleError
    from genzoo.samples import modality
    with pytest.raises(SampleError, match="generate\\(\\) returned ndarray; audios are a tensor"):
        modality("audio").check_batch(np.zeros((2, 1, 8)), "m", 0)


def test_a_folder_names_each_png_by_the_index_its_provenance_records(tmp_path):
    from PIL import Image
    from genzoo.writers import open_writer
    writer = open_writer(tmp_path / "d", 4, "image")
    for _ in range(2):  # batches without "start": the folder counts
        writer.write(Samples(images=torch.rand(2, 1, 4, 4)))
    files = writer.close()
    assert [Image.open(f).text["index"] for f in files] == ["0", "1", "2", "3"]
    assert [f.name for f in files] == ["00000.png", "00001.png", "00002.png", "00003.png"]
