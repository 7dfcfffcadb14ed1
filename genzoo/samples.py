"""`Samples`: what every model's ``sample`` returns — images or texts, plus provenance."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any



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
