"""Data loading for finetune/eval: MNIST splits, folders, arrays, and one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import MNIST_SPLITS, load_image_dataset, mnist_split
from genzoo.errors import DataError


def test_mnist_splits_are_disjoint_balanced_and_in_range():
    seen = {}
    for split, (lo, hi) in MNIST_SPLITS.items():
        x, y = mnist_split(split)
        assert x.shape == ((hi - lo) * 10, 1, 28, 28) and x.dtype == torch.float32
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        assert torch.bincount(y, minlength=10).tolist() == [hi - lo] * 10
        seen[split] = {tuple(v) for v in x.reshape(len(x), -1)[:, ::7].numpy().round(3).tolist()}
    assert not seen["train"] & seen["ref"] and not seen["ref"] & seen["floor"]


def test_folder_of_images_is_converted_to_the_model_shape(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 40, 3), 60 * i, np.uint8)).save(tmp_path / "sub" / f"{i}.png")
    with caplog.at_level("INFO", logger="genzoo"):
        ds = load_image_dataset(tmp_path, shape=(1, 28, 28))
    assert ds.images.shape == (3, 1, 28, 28)
    assert ds.images[2].mean().item() == pytest.approx(120 / 255, abs=1e-2)
    assert any("converted" in r.getMessage() for r in caplog.records)


def test_npz_and_npy_arrays_in_common_layouts(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((5, 28, 28), np.uint8) + 255)
    np.save(tmp_path / "b.npy", np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32"))
    a = load_image_dataset(tmp_path / "a.npz")
    b = load_image_dataset(tmp_path / "b.npy")
    assert a.images.shape == (5, 1, 28, 28) and float(a.images.max()) == 1.0
    assert b.images.shape == (4, 1, 28, 28)


def _missing(p):
    return p / "missing"


def _empty(p):
    (p / "empty").mkdir()
    return p / "empty"


def _undecodable(p):
    (p / "bad").mkdir()
    (p / "bad" / "x.png").write_bytes(b"not a png")
    return p / "bad"


def _flat(p):
    np.save(p / "flat.npy", np.zeros((3, 5)))
    return p / "flat.npy"


def _pickled(p):
    np.save(p / "obj.npy", np.array([{"a": 1}], dtype=object))  # loading it would unpickle
    return p / "obj.npy"


def _csv(p):
    (p / "x.csv").write_text("1,2")
    return p / "x.csv"


@pytest.mark.parametrize("make, message", [
    (_missing, "does not exist"), (_empty, "no images"), (_undecodable, "not a readable image"),
    (_flat, "expected images shaped"), (_pickled, "cannot read"), (_csv, "unsupported data file"),
])
def test_bad_data_is_a_one_line_error_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as err:
        load_image_dataset(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert path.name in str(err.value)
