"""`Samples`: what every model's ``sample`` returns — images or texts, plus provenance."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from genzoo.errors import SampleError

#: The safetensors metadata key holding a ``Samples``' non-tensor fields as JSON.
_FIELDS_KEY = "genzoo_samples"


@dataclass
class Samples:
    """Images as an (N, C, H, W) float tensor in [0, 1], or texts as a list of strings.

    ``meta`` records provenance (model, revision, seed, sampler, steps); it is written into
    PNG text chunks and beside other formats.
    """

    images: Any = None
    texts: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else int(self.images.shape[0])

    def __getitem__(self, i):
        if self.texts is not None:
            return self.texts[i]
        return self.images[i]

    @property
    def kind(self) -> str:
        """"image" or "text"."""
        return "text" if self.texts is not None else "image"

    def provenance(self) -> dict[str, str]:
        """The metadata as strings, with the genzoo version, for PNG text chunks."""
        from genzoo import __version__
        meta = {"genzoo_version": __version__, **self.meta}
        return {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()
                if v is not None and k != "start"}

    def to_bytes(self) -> bytes:
        """These samples as safetensors bytes (how processes exchange them: never pickle).
        Every dataclass field that holds a tensor is stored as a tensor under its name, every
        other field (texts, meta, a field added later) as JSON in the file's metadata, so
        ``from_bytes`` rebuilds an equal ``Samples`` bit for bit. A value JSON cannot hold
        (a callable in ``meta``) is a one-line SampleError."""
        import torch
        from safetensors.torch import save
        tensors: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                tensors[f.name] = value.detach().to("cpu").contiguous()
            else:
                plain[f.name] = value
        try:
            text = json.dumps(plain, allow_nan=True)
        except (TypeError, ValueError) as e:
            raise SampleError(f"samples cannot be sent between processes: {e}") from e
        return save(tensors, metadata={_FIELDS_KEY: text})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Samples":
        """The ``Samples`` that ``to_bytes`` wrote (safetensors; nothing is unpickled); a
        malformed payload is a one-line SampleError."""
        from safetensors.torch import load
        data = bytes(data)
        try:
            tensors = load(data)
            # the metadata sits in the safetensors header: an 8-byte little-endian length,
            # then that much JSON (read here directly: safe_open wants a file)
            size = int.from_bytes(data[:8], "little")
            header = json.loads(data[8:8 + size].decode("utf-8"))
            plain = json.loads(header["__metadata__"][_FIELDS_KEY])
        except Exception as e:  # noqa: BLE001 - any malformed payload is one error
            first = str(e).splitlines()[0] if str(e) else ""
            raise SampleError(f"received samples are not readable ({type(e).__name__}: "
                              f"{first})") from e
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**plain, **tensors}.items() if k in names})

    def grid(self, nrow: int | None = None, padding: int = 2):
        """The images tiled into one (H', W', C) uint8 array (numpy)."""
        from genzoo.writers import grid_array
        return grid_array(self.images, nrow, padding)

    def save(self, path: str | os.PathLike, nrow: int | None = None) -> list[Path]:
        """Save by what ``path`` names: ``*.png`` -> one grid; a folder (existing, or a path
        ending in ``/`` or without a suffix) -> one PNG (or .txt) per sample; ``*.npz`` -> the
        array; ``*.txt``/``*.jsonl`` -> texts. Returns the files written (see
        ``genzoo.writers``, which also writes batch by batch as a model samples)."""
        from genzoo.writers import open_writer
        writer = open_writer(path, len(self), self.kind, nrow)
        try:
            writer.write(self)
            return writer.close()
        except BaseException:
            writer.abort()
            raise
