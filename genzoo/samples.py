"""`Samples`: what every model's ``sample`` returns — images or texts, plus provenance."""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OptionError
from .fsutil import atomic_write_bytes, atomic_write_text


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
        from . import __version__
        meta = {"genzoo_version": __version__, **self.meta}
        return {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()
                if v is not None}

    def grid(self, nrow: int | None = None, padding: int = 2):
        """The images tiled into one (H', W', C) uint8 array (numpy)."""
        import numpy as np
        imgs = (self.images.clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)
        n, c, h, w = imgs.shape
        nrow = nrow or max(1, math.ceil(math.sqrt(n)))
        rows = math.ceil(n / nrow)
        out = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8)
        for i, img in enumerate(imgs):
            r, col = divmod(i, nrow)
            y, x = padding + r * (h + padding), padding + col * (w + padding)
            out[y:y + h, x:x + w] = img.transpose(1, 2, 0)
        return out

    def save(self, path: str | os.PathLike, nrow: int | None = None) -> list[Path]:
        """Save by what ``path`` names: ``*.png`` -> one grid; a folder (existing, or a path
        ending in ``/`` or without a suffix) -> one PNG (or .txt) per sample; ``*.npz`` -> the
        array; ``*.txt``/``*.jsonl`` -> texts. Returns the files written."""
        path = Path(path)
        str_path = os.fspath(path)
        suffix = path.suffix.lower()
        if self.kind == "text":
            return self._save_texts(path, suffix, str_path)
        if suffix == ".png":
            return [atomic_write_bytes(path, self._png(self.grid(nrow)))]
        if suffix == ".npz":
            return [atomic_write_bytes(path, self._npz())]
        if path.is_dir() or str_path.endswith(os.sep) or suffix == "":
            path.mkdir(parents=True, exist_ok=True)
            written = []
            for i in range(len(self)):
                one = Samples(images=self.images[i:i + 1], meta={**self.meta, "index": i})
                written.append(atomic_write_bytes(path / f"{i:05d}.png", one._png(one.grid(1, 0))))
            return written
        raise OptionError(f"cannot save images as {path.name!r}: use a .png grid, a .npz array "
                          "or a folder/")

    def _save_texts(self, path: Path, suffix: str, str_path: str) -> list[Path]:
        if suffix == ".jsonl":
            lines = "".join(json.dumps({"text": t, **self.meta, "index": i}) + "\n"
                            for i, t in enumerate(self.texts))
            return [atomic_write_text(path, lines)]
        if suffix == ".txt":
            return [atomic_write_text(path, "\n\n".join(self.texts) + "\n")]
        if path.is_dir() or str_path.endswith(os.sep) or suffix == "":
            path.mkdir(parents=True, exist_ok=True)
            return [atomic_write_text(path / f"{i:05d}.txt", t) for i, t in enumerate(self.texts)]
        raise OptionError(f"cannot save texts as {path.name!r}: use .txt, .jsonl or a folder/")

    def _png(self, array) -> bytes:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo
        info = PngInfo()
        for k, v in self.provenance().items():
            info.add_text(k, v)
        img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        buf = io.BytesIO()
        img.save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()

    def _npz(self) -> bytes:
        import numpy as np
        buf = io.BytesIO()
        np.savez_compressed(buf, images=self.images.to("cpu").numpy(),
                            meta=np.array(json.dumps(self.provenance())))
        return buf.getvalue()
