"""What goes over the wire: a sampling request checked, and samples encoded as ``genzoo sample``
writes them (``png``: the grid, ``npz``: the same members, ``json``: a PNG per sample or the
texts, with provenance). Torch-free at import."""
from __future__ import annotations

import base64
import binascii
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genzoo.errors import OptionError

if TYPE_CHECKING:
    from genzoo.samples import Samples

FORMATS = ("png", "npz", "json")
_KEYS = {"n", "seed", "options", "format", "stream"}


@dataclass
class Limits:
    """Per-request limits: samples, text tokens, body bytes and seconds."""

    max_n: int = 256
    max_new_tokens: int = 1024
    max_body: int = 8 << 20
    timeout: float = 120.0


@dataclass
class SampleRequest:
    """A checked ``POST /v1/models/{name}/samples`` body."""

    n: int
    seed: int
    options: dict[str, Any]
    format: str
    stream: bool


def parse_request(body: Any, modality: str, limits: Limits) -> SampleRequest:
    """The JSON body checked against ``limits``; anything wrong is a one-line ``OptionError``
    (the server answers 422)."""
    if not isinstance(body, dict):
        raise OptionError('the body must be a JSON object such as {"n": 4, "seed": 0}')
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise OptionError(f"unknown field(s) {', '.join(map(repr, unknown))}; the body takes "
                          f"{', '.join(sorted(_KEYS))} (model options go in \"options\")")
    n = body.get("n", 1 if modality == "text" else 16)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limits.max_n:
        raise OptionError(f"n must be a whole number from 1 to {limits.max_n}, got {n!r}")
    seed = body.get("seed", 0)
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise OptionError('"options" must be a JSON object of model options')
    fmt = body.get("format", "json" if modality == "text" else "png")
    if fmt not in FORMATS or (modality == "text" and fmt != "json"):
        allowed = "json" if modality == "text" else ", ".join(FORMATS)
        raise OptionError(f"format must be one of {allowed} for a {modality} model, got {fmt!r}")
    tokens = options.get("max_new_tokens")
    if isinstance(tokens, int) and tokens > limits.max_new_tokens:
        raise OptionError(f"max_new_tokens must be at most {limits.max_new_tokens} on this "
                          f"server, got {tokens}")
    stream = body.get("stream", False)
    if stream not in (True, False) or (stream and (modality != "text" or n != 1)):
        raise OptionError('"stream": true is for text models with n = 1')
    return SampleRequest(n, seed, dict(options), fmt, bool(stream))


def decode_images(schema: dict[str, Any], options: dict[str, Any],
                  shape: tuple[int, ...] | None) -> dict[str, Any]:
    """Image options arrive as base64 PNG/JPEG strings (or lists of them): decode each into
    a (C, H, W) float tensor in [0, 1] at the model's image shape, stacked to (N, C, H, W)."""
    out = dict(options)
    for name, option in schema.items():
        if option.type != "image" or options.get(name) is None:
            continue
        value = options[name]
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) for v in items):
            raise OptionError(f"option {name!r} takes base64-encoded images (a string or a list)")
        import torch
        out[name] = torch.stack([_image_tensor(name, v, shape) for v in items])
    return out


def _image_tensor(name: str, data: str, shape: tuple[int, ...] | None) -> Any:
    """One base64 image (a ``data:`` URL prefix allowed) as a float tensor at ``shape``,
    decoded and converted exactly as ``genzoo sample --init FILE`` converts a file."""
    from genzoo.data import read_images
    from genzoo.errors import DataError
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=True)
        images, _ = read_images([io.BytesIO(raw)], shape)
    except (binascii.Error, ValueError, DataError):
        raise OptionError(f"option {name!r}: not a base64-encoded PNG or JPEG image") from None
    return images[0]


def png_grid(samples: Samples) -> bytes:
    """The grid ``genzoo sample -o x.png`` writes: the same pixels and text chunks."""
    from genzoo.writers import grid_array, png_bytes
    return png_bytes(grid_array(samples.images), samples.provenance())


def npz_bytes(samples: Samples) -> bytes:
    """The file ``genzoo sample -o x.npz`` writes (written by its own writer, then read)."""
    from genzoo.writers import NpzWriter
    with tempfile.TemporaryDirectory(prefix="genzoo-serve-") as tmp:
        path = Path(tmp) / "samples.npz"
        writer = NpzWriter(path, len(samples))
        writer.write(samples)
        writer.close()
        return path.read_bytes()


def json_payload(samples: Samples, name: str, n: int, seed: int, seconds: float) -> dict[str, Any]:
    """The JSON response: one base64 PNG per image (as ``-o dir/`` writes each) or the texts,
    with the provenance every sample carries."""
    from genzoo.writers import grid_array, png_bytes
    out: dict[str, Any] = {"model": name, "n": n, "seed": seed, "seconds": round(seconds, 4),
                           "meta": {k: v for k, v in samples.meta.items() if k != "start"},
                           "provenance": samples.provenance()}
    if samples.kind == "text":
        out["texts"] = list(samples.texts or [])
        return out
    provenance = samples.provenance()
    out["images"] = [base64.b64encode(png_bytes(grid_array(samples.images[i:i + 1], 1, 0),
                                                {**provenance, "index": str(i)})).decode()
                     for i in range(len(samples))]
    return out
