"""Writing samples to disk as they are made: memory stays bounded whatever ``n`` is.

``open_writer(path, n, modality)`` picks the format from what ``path`` names, among the
writers the samples' modality declares (``Modality.writers``: for images ``*.png`` one grid
and ``*.npz`` the arrays, for texts ``*.txt``/``*.jsonl``, for audio ``*.wav``), or a folder
for one file per sample (``Modality.encode``) — and opens it
*before* any sampling, so an output that cannot be written fails at once, in one line. Each
batch is written as it arrives (``write``); ``close`` moves the finished file into place
atomically, so a crash or Ctrl-C never leaves a half-written file under the user's name.
Only a PNG grid holds its images until the end, and it is refused above ``GRID_MAX``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from genzoo.errors import OptionError, OutputError
from genzoo.fsutil import _readable, atomic_write_bytes

#: The most images one PNG grid holds (a 64x64 grid); more go to a .npz or a folder.
GRID_MAX = 4096


def os_error(path: Path | str, e: OSError) -> OutputError:
    """A one-line error for a file genzoo could not write, saying what to do."""
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EISDIR: "it is a folder", errno.ENOTDIR: "a part of the path is a file",
              errno.EEXIST: "a part of the path is a file",
              errno.ENAMETOOLONG: "the name is too long"}.get(e.errno, e.strerror or str(e))
    return OutputError(f"cannot write {path}: {reason}; choose another -o/--out")


def is_folder_target(path: Path) -> bool:
    """A folder is meant: an existing one, a path ending in a separator, or no suffix."""
    return path.is_dir() or os.fspath(path).endswith(os.sep) or path.suffix == ""


class Writer:
    """Base class: ``write(samples)`` per batch, then ``close()`` -> the files written."""

    #: What the written file holds, for messages ("one grid of every image").
    what: str = "a file"

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.count = path, n, 0

    def write(self, samples) -> None:
        """Add one batch (a ``Samples``) to the output."""
        raise NotImplementedError

    def close(self) -> list[Path]:
        """Finish the output; returns the files written."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop a half-written output (temp files only: nothing of the user's is touched)."""


class _TempFileWriter(Writer):
    """Streams into a temp file beside ``path``; ``close`` renames it into place."""

    mode = "wb"

    def __init__(self, path: Path, n: int):
        super().__init__(path, n)
        if path.is_dir():
            raise OutputError(f"cannot write {path}: it is a folder; name a file, or use a "
                              "path ending in / for one file per sample")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                            suffix=".tmp")
            self.file = os.fdopen(fd, self.mode)
        except OSError as e:
            raise os_error(path, e) from None

    def _io(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            self.abort()
            raise os_error(self.path, e) from None

    def close(self) -> list[Path]:
        def finish():
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            _readable(self.tmp)
            os.replace(self.tmp, self.path)
        self._io(finish)
        return [self.path]

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class NpzWriter(_TempFileWriter):
    """The samples as one float32 array named for the modality (``images`` (n, C, H, W),
    ``audios`` (n, channels, T)), each metadata value the modality names (``sample_rate``)
    as its own member, and ``meta`` (provenance JSON), as ``np.load`` reads them; the array
    member is streamed batch by batch into the zip."""

    what = "the array"

    def __init__(self, path: Path, n: int, nrow: int | None = None):
        super().__init__(path, n)
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self.member = None
        self.meta: dict[str, str] = {}
        self.extra: dict[str, Any] = {}

    def write(self, samples) -> None:
        import numpy as np
        arr = np.ascontiguousarray(samples.data.to("cpu").numpy(), dtype=np.float32)
        if self.member is None:
            spec = samples.spec()
            self.meta = samples.provenance()
            self.extra = {k: samples.meta[k] for k in spec.metadata}
            self.member = self._io(self.zip.open, _member(f"{spec.plural}.npy"), "w",
                                   force_zip64=True)
            header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
                      "shape": (self.n, *arr.shape[1:])}
            buf = io.BytesIO()
            np.lib.format.write_array_header_2_0(buf, header)
            self._io(self.member.write, buf.getvalue())
        self._io(self.member.write, arr.tobytes())
        self.count += len(arr)

    def close(self) -> list[Path]:
        import numpy as np
        if self.count != self.n or not self.count:
            self.abort()
            raise OutputError(f"{self.path}: {self.count} of {self.n} samples were made; "
                              "nothing was written")
        meta = dict(self.meta)
        meta.pop("index", None)
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta)))

        extra = {}
        for key, value in self.extra.items():
            item = io.BytesIO()
            np.save(item, np.array(value))
            extra[key] = item.getvalue()

        def finish_zip():
            self.member.close()
            for key, data in extra.items():
                self.zip.writestr(_member(f"{key}.npy"), data)
            self.zip.writestr(_member("meta.npy"), buf.getvalue())
            self.zip.close()
        self._io(finish_zip)
        return super().close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.member is not None:
                self.member.close()
            self.zip.close()
        self.zip.fp = None  # nothing left for ZipFile.__del__ to flush into a closed file
        super().abort()


class TextFileWriter(_TempFileWriter):
    """Texts to ``*.txt`` (blank-line separated) or ``*.jsonl`` (one JSON object a line)."""

    what = "the texts"

    def __init__(self, path: Path, n: int, nrow: int | None = None):
        super().__init__(path, n)
        self.jsonl = path.suffix.lower() == ".jsonl"

    def write(self, samples) -> None:
        start = int(samples.meta.get("start", self.count))
        meta = {k: v for k, v in samples.meta.items() if k != "start"}
        for i, text in enumerate(samples.texts):
            if self.jsonl:
                line = json.dumps({"text": text, **meta, "index": start + i}) + "\n"
            else:
                line = ("\n\n" if self.count else "") + text
            self._io(self.file.write, line.encode("utf-8"))
            self.count += 1

    def close(self) -> list[Path]:
        if not self.jsonl and self.count:
            self._io(self.file.write, b"\n")
        return super().close()


class FolderWriter(Writer):
    """One file per sample (the modality's ``encode``: a PNG, a .txt, a WAV ...), named by its
    index, each written atomically."""

    def __init__(self, path: Path, n: int):
        super().__init__(path, n)
        if path.exists() and not path.is_dir():
            raise OutputError(f"cannot write into {path}: it is a file; name a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(path, e) from None
        self.written: list[Path] = []

    def write(self, samples) -> None:
        start = int(samples.meta.get("start", self.count))
        if "start" not in samples.meta:  # encode() names the index in its provenance
            samples = dataclasses.replace(samples, meta={**samples.meta, "start": start})
        spec = samples.spec()
        for i in range(len(samples)):
            index = start + i
            try:
                target = atomic_write_bytes(self.path / f"{index:05d}{spec.sample_suffix}",
                                            spec.encode(samples, i))
            except OSError as e:
                raise os_error(self.path / f"{index:05d}", e) from None
            self.written.append(target)
            self.count += 1

    def close(self) -> list[Path]:
        return self.written


class GridWriter(Writer):
    """One PNG grid of every sample: it needs them all, so it is limited to ``GRID_MAX``."""

    what = "a grid"

    def __init__(self, path: Path, n: int, nrow: int | None = None):
        super().__init__(path, n)
        if n > GRID_MAX:
            raise OptionError(f"a PNG grid holds at most {GRID_MAX} images, asked for {n}; "
                              f"write -o {path.with_suffix('.npz')} or -o {path.with_suffix('')}/ "
                              "(one PNG per sample) instead")
        self.probe = _TempFileWriter(path, n)  # fails now, before sampling, if unwritable
        self.nrow, self.parts, self.provenance = nrow, [], {}

    def write(self, samples) -> None:
        self.parts.append(samples.data)
        self.provenance = samples.provenance()
        self.count += len(samples)

    def close(self) -> list[Path]:
        import torch
        png = png_bytes(grid_array(torch.cat(self.parts), self.nrow), self.provenance)
        self.probe._io(self.probe.file.write, png)
        return self.probe.close()

    def abort(self) -> None:
        self.probe.abort()


def _member(name: str) -> zipfile.ZipInfo:
    """A zip member with a fixed timestamp: the same samples give the same .npz bytes (the
    provenance is in ``meta``, not in the file's clock)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def grid_array(images, nrow: int | None = None, padding: int = 2):
    """(N, C, H, W) images in [0, 1] tiled into one (H', W', C) uint8 numpy array, ``nrow``
    images a row (default: near square)."""
    import numpy as np
    imgs = (images.clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)
    n, c, h, w = imgs.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    out = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8)
    for i, img in enumerate(imgs):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        out[y:y + h, x:x + w] = img.transpose(1, 2, 0)
    return out


def png_bytes(array, provenance: dict[str, str]) -> bytes:
    """A (H, W, C) uint8 array as PNG bytes, with ``provenance`` in its text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for k, v in provenance.items():
        info.add_text(k, v)
    img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def open_writer(path: str | os.PathLike, n: int, modality: Any,
                nrow: int | None = None) -> Writer:
    """The writer for ``path`` (see the module docstring); ``modality`` is a
    ``genzoo.samples.Modality`` or its registered name. A suffix the modality has no writer
    for is a one-line ``OptionError`` listing those it has."""
    if isinstance(modality, str):  # a registered name: ask the plugins (a way up)
        from genzoo.plugins.modalities import get_modality
        modality = get_modality(modality)
    path = Path(path).expanduser()
    writers = modality.writers()
    try:
        folder = is_folder_target(path)
    except OSError as e:
        raise os_error(path, e) from None
    if path.suffix.lower() in writers:
        return writers[path.suffix.lower()](path, n, nrow)
    if folder and modality.encodes():
        return FolderWriter(path, n)
    choices = [f"{s} ({getattr(w, 'what', 'a file')})" for s, w in writers.items()]
    if modality.encodes():
        choices.append(f"a folder/ (one {modality.sample_suffix} per sample)")
    if not choices:
        raise OptionError(f"{modality.plural} have no file format: the {modality.name!r} "
                          "modality declares no writer")
    listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
    raise OptionError(f"cannot save {modality.plural} as {path.name!r}: use {listed}")


__all__ = ["GRID_MAX", "Writer", "open_writer", "os_error", "is_folder_target", "grid_array",
           "png_bytes"]
