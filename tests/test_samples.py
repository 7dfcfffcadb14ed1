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
