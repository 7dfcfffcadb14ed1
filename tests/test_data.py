"""Data loading for finetune/eval: MNIST splits, folders, arrays, the labels each source
carries (.npz arrays, ImageFolder class folders, Hugging Face metadata.jsonl), and one-line
errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import MNIST_SPLITS, TensorImages, load_image_dataset, mnist_split
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
    assert ds.labels is None  # one subfolder is where the images sit, not a class


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


# ---- labels ---------------------------------------------------------------------------------
def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(path)


def test_npz_labels_array_comes_with_the_images(tmp_path):
    images = np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((4, 28, 28), np.uint8) * 60
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([3, 1, 4, 1]))
    ds = load_image_dataset(tmp_path / "d.npz")
    assert ds.labels.tolist() == [3, 1, 4, 1] and ds.labels.dtype == torch.int64
    assert ds.images[2].mean().item() == pytest.approx(120 / 255)  # label i stays with image i
    np.savez(tmp_path / "named.npz", x=images, y=np.array(["dog", "cat", "dog", "ant"]))
    named = load_image_dataset(tmp_path / "named.npz")
    assert named.classes == ["ant", "cat", "dog"] and named.labels.tolist() == [2, 1, 2, 0]
    np.savez(tmp_path / "plain.npz", images=images)
    assert load_image_dataset(tmp_path / "plain.npz").labels is None
    np.savez(tmp_path / "only.npz", labels=np.array([0, 1, 0, 1]), pixels=images)
    assert load_image_dataset(tmp_path / "only.npz").images.shape == (4, 1, 28, 28)


def test_class_folders_are_labelled_as_torchvision_imagefolder(tmp_path):
    root = tmp_path / "digits"
    for k, name in enumerate(["7", "0", "3", "cat", "10"]):
        for i in range(2):
            _png(root / name / "deeper" / f"{i}.png" if i else root / name / f"{i}.png", 20 * k)
    (root / "9").mkdir()  # an empty class still takes its index, as ImageFolder gives it
    (root / ".ipynb_checkpoints").mkdir()  # hidden: no class
    ds = load_image_dataset(root)
    ImageFolder = pytest.importorskip("torchvision.datasets").ImageFolder
    oracle = ImageFolder(str(root), allow_empty=True) if "allow_empty" in \
        ImageFolder.__init__.__code__.co_varnames else None
    assert ds.classes == ["0", "10", "3", "7", "9", "cat"]
    if oracle is not None:
        assert [c for c in oracle.classes if not c.startswith(".")] == ds.classes
    files = sorted(p for p in root.rglob("*.png"))
    assert ds.labels.tolist() == [ds.classes.index(f.relative_to(root).parts[0]) for f in files]
    mean_of = {f.relative_to(root).parts[0]: ds.images[i].mean().item()
               for i, f in enumerate(files)}
    assert mean_of["cat"] == pytest.approx(60 / 255)  # pixels and labels stay paired


def test_digit_folders_give_labels_0_to_9(tmp_path):
    for k in range(10):
        _png(tmp_path / str(k) / "a.png", 25 * k)
    ds = load_image_dataset(tmp_path)
    assert ds.labels.tolist() == list(range(10))
    assert [round(float(x.mean()) * 255) for x in ds.images] == [25 * k for k in range(10)]


def test_images_beside_class_folders_mean_no_labels(tmp_path):
    _png(tmp_path / "a" / "x.png", 0)
    _png(tmp_path / "b" / "x.png", 0)
    _png(tmp_path / "loose.png", 0)
    assert load_image_dataset(tmp_path).labels is None


def _metadata(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_huggingface_imagefolder_metadata_labels(tmp_path, caplog):
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        _png(tmp_path / "train" / name, 10)
    _metadata(tmp_path / "train", [{"file_name": "a.png", "label": 2},
                                   {"file_name": "sub/d.png", "label": 0, "text": "zero"},
                                   {"file_name": "c.png", "label": None}])
    _png(tmp_path / "train" / "5" / "e.png", 10)  # folder names are not labels beside metadata
    with caplog.at_level("INFO", logger="genzoo"):
        ds = load_image_dataset(tmp_path)
    order = sorted((tmp_path / "train").rglob("*.png"))
    expected = {"a.png": 2, "b.png": -1, "c.png": -1, "d.png": 0, "e.png": -1}
    assert ds.labels.tolist() == [expected[f.name] for f in order]
    assert any("labelled from metadata.jsonl" in r.getMessage() for r in caplog.records)
    _metadata(tmp_path / "train", [{"file_name": "a.png", "label": "dog"},
                                   {"file_name": "b.png", "label": "cat"}])
    named = load_image_dataset(tmp_path)
    assert named.classes == ["cat", "dog"]
    assert named.labels.tolist() == [{"a.png": 1, "b.png": 0}.get(f.name, -1) for f in order]
    _metadata(tmp_path / "train", [{"file_name": "a.png", "text": "a caption"}])
    assert load_image_dataset(tmp_path).labels is None  # metadata without labels


@pytest.mark.parametrize("write, message", [
    (lambda p: np.savez(p / "d.npz", images=np.zeros((3, 28, 28)), labels=[0, 1]),
     "2 labels for 3 images"),
    (lambda p: np.savez(p / "d.npz", images=np.zeros((2, 28, 28)), labels=[0.5, 1]),
     "holds 0.5"),
    (lambda p: np.savez(p / "d.npz", images=np.zeros((2, 28, 28)), labels=np.zeros((2, 2))),
     "one class label per image"),
    (lambda p: _metadata(p / "d", [{"file_name": "gone.png", "label": 1}]), "gone.png"),
    (lambda p: (p / "d" / "metadata.jsonl").write_text("{oops\n"),
     "metadata.jsonl:1"),
])
def test_bad_labels_are_a_one_line_error(tmp_path, write, message):
    _png(tmp_path / "d" / "a.png", 0)
    write(tmp_path)
    target = tmp_path / "d.npz" if (tmp_path / "d.npz").exists() else tmp_path / "d"
    with pytest.raises(DataError) as err:
        load_image_dataset(target)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_model_without_labels_says_once_that_it_ignores_them(caplog):
    labelled = TensorImages(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, -1]), source="my.npz")
    with caplog.at_level("WARNING", logger="genzoo"):
        plain = labelled.without_labels("this unconditional test model")
        TensorImages(torch.rand(2, 1, 4, 4), source="x").without_labels("m")
        TensorImages(torch.rand(2, 1, 4, 4), torch.tensor([-1, -1])).without_labels("m")
    assert plain.labels is None and torch.equal(plain.images, labelled.images)
    [record] = caplog.records
    assert record.levelname == "WARNING" and "\n" not in record.getMessage()
    assert "my.npz" in record.getMessage() and "ignores them" in record.getMessage()


def test_labelled_data_trains_a_conditional_family_on_its_labels(tmp_path):
    from genzoo.data import LabelledImages
    for k in range(3):
        _png(tmp_path / f"class_{k}" / "a.png", 80 * k)
    labelled = LabelledImages.of(load_image_dataset(tmp_path), num_classes=3)
    images, labels = labelled[torch.arange(3)]
    assert labels.tolist() == [0, 1, 2]
    assert [round(float(x.mean()) * 255) for x in images] == [0, 80, 160]


def test_huggingface_imagefolder_captions_pair_with_their_images(tmp_path, caplog):
    """metadata.jsonl's ``text`` (else ``caption``) column: one caption per image, in the
    images' order; ``CaptionedImages`` serves (images, captions), "" for an uncaptioned one."""
    from genzoo.data import CaptionedImages
    for name, value in (("a.png", 10), ("b.png", 20), ("sub/c.png", 30), ("d.png", 40)):
        _png(tmp_path / name, value)
    _metadata(tmp_path, [{"file_name": "b.png", "text": "bee", "caption": "not this"},
                         {"file_name": "sub/c.png", "caption": "sea"},
                         {"file_name": "a.png", "text": "ay", "label": 1}])
    with caplog.at_level("INFO", logger="genzoo"):
        ds = load_image_dataset(tmp_path, shape=(1, 4, 4))
    assert ds.captions == ["ay", "bee", None, "sea"]  # sorted files: a, b, d, sub/c
    assert any("3 of 4 images captioned" in r.getMessage() for r in caplog.records)
    pairs = CaptionedImages.of(ds, "a text-to-image model")
    images, captions = pairs[torch.tensor([3, 1, 2])]
    assert captions == ["sea", "bee", ""]
    assert [round(float(x.mean()) * 255) for x in images] == [30, 20, 40]
    assert pairs[0][1] == "ay" and len(pairs) == 4
    assert ds.without_labels("m").captions == ds.captions


@pytest.mark.parametrize("make, message", [
    (lambda p: TensorImages(torch.rand(2, 1, 4, 4), source="t.npz"), "t.npz has no captions"),
    (lambda p: (_metadata(p, [{"file_name": "a.png", "text": ["two", "captions"]}]),
                load_image_dataset(p))[1], "a caption is one string"),
    (lambda p: (_metadata(p, [{"file_name": "gone.png", "text": "x"}]),
                load_image_dataset(p))[1], "gone.png"),
    (lambda p: load_image_dataset(p), "has no captions"),
])
def test_data_without_captions_is_a_one_line_error(tmp_path, make, message):
    from genzoo.data import CaptionedImages
    _png(tmp_path / "a.png", 0)
    with pytest.raises(DataError, match=message) as err:
        CaptionedImages.of(make(tmp_path), "a text-to-image model")
    assert "\n" not in str(err.value)
