"""What goes over the wire: a sampling request checked, and samples encoded as ``genzoo sample``
writes them (``png``: the grid, ``npz``: the same members, ``json``: a PNG per sample or the
texts, with provenance). Torch-free at import."""
from __future__ import annotations

import base64
import binascii
import io
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genzoo.errors import OptionError

if TYPE_CHECKING:
    from genzoo.samples import Samples

FORMATS = ("png", "npz", "json")
_KEYS = {"n", "seed", "options", "format", "stream"}
#: How deeply a request body may nest: honest bodies nest a few levels; the bound keeps
#: every later walk over the body (validation, logging, echoing) cheap and recursion-safe.
MAX_JSON_DEPTH = 64
#: The most pixels an uploaded image's header may declare (width x height). Decoding is
#: refused above it, before any pixel is read: a 27 kB 1-bit PNG can declare 225 Mpx.
MAX_IMAGE_PIXELS = 4096 * 4096


@dataclass
class Limits:
    """Per-request limits: samples, text tokens, body bytes, seconds and image pixels."""

    max_n: int = 256
    max_new_tokens: int = 1024
    max_body: int = 8 << 20
    timeout: float = 120.0
    max_image_pixels: int = MAX_IMAGE_PIXELS

    def caps(self) -> dict[str, int]:
        """Server-wide maxima of model options, by option name: applied to the value after
        the model's schema parsed it (``check_caps``), so "1025", 1025.0 and 1025 are one."""
        return {"max_new_tokens": self.max_new_tokens}


def load_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``raw`` parsed as JSON (an empty body is ``{}``), nested at most ``max_depth`` levels;
    otherwise a one-line ``OptionError``. Never recurses over the document itself."""
    try:
        value = json.loads(raw or b"{}", parse_constant=_not_json)
    except RecursionError:  # the C decoder's own guard on absurd nesting
        raise OptionError(f"the body nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise OptionError("the body is not valid JSON") from None
    if json_depth(value) > max_depth:
        raise OptionError(f"the body nests deeper than {max_depth} levels")
    return value


def _not_json(name: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON: refuse them at the door."""
    raise ValueError(f"{name} is not JSON")


def json_depth(value: Any) -> int:
    """How many levels of lists and objects ``value`` nests (0 for a scalar), walked with an
    explicit stack so that no document can exhaust Python's recursion limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_caps(options: dict[str, Any], limits: Limits) -> None:
    """Refuse parsed option values over the server's caps (one line; the server answers 422).
    ``options`` must be what the model's schema returned (``GenerativeModel.check_options``),
    so that a string or a float is compared as the number the model would use."""
    for name, cap in limits.caps().items():
        value = options.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            raise OptionError(f"{name} must be at most {cap} on this server, got {value}")


@dataclass
class SampleRequest:
    """A checked ``POST /v1/models/{name}/samples`` body."""

    n: int
    seed: int
    options: dict[str, Any]
    format: str
    stream: bool


def parse_request(body: Any, modality: str, limits: Limits) -> SampleRequest:
    """The JSON body's fields checked (strict JSON types) against ``limits``; anything wrong is
    a one-line ``OptionError`` (the server answers 422). The model options are checked later,
    by the model's schema and then ``check_caps``."""
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
    options = body.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):  # [], 0, false and "" are not "no options"
        raise OptionError('"options" must be a JSON object of model options, got '
                          f"{json.dumps(options)[:40]}")
    fmt = body.get("format", "json" if modality == "text" else "png")
    if fmt not in FORMATS or (modality == "text" and fmt != "json"):
        allowed = "json" if modality == "text" else ", ".join(FORMATS)
        raise OptionError(f"format must be one of {allowed} for a {modality} model, got {fmt!r}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):  # 0, 1, "true" are not booleans
        raise OptionError(f'"stream" must be true or false, got {json.dumps(stream)[:40]}')
    if stream and (modality != "text" or n != 1):
        raise OptionError('"stream": true is for text models with n = 1')
    return SampleRequest(n, seed, dict(options), fmt, bool(stream))


def decode_images(schema: dict[str, Any], options: dict[str, Any],
                  shape: tuple[int, ...] | None,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, Any]:
    """Image options arrive as base64 PNG/JPEG strings (or lists of them): decode each into
    a (C, H, W) float tensor in [0, 1] at the model's image shape, stacked to (N, C, H, W).
    An image whose header declares more than ``max_pixels`` is refused before decoding."""
    out = dict(options)
    for name, option in schema.items():
        if option.type != "image" or options.get(name) is None:
            continue
        value = options[name]
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) for v in items):
            raise OptionError(f"option {name!r} takes base64-encoded images (a string or a list)")
        import torch
        out[name] = torch.stack([_image_tensor(name, v, shape, max_pixels) for v in items])
    return out


def _image_tensor(name: str, data: str, shape: tuple[int, ...] | None,
                  max_pixels: int) -> Any:
    """One base64 image (a ``data:`` URL prefix allowed) as a float tensor at ``shape``,
    decoded and converted exactly as ``genzoo sample --init FILE`` converts a file."""
    from PIL import Image
    from genzoo.data import read_images
    from genzoo.errors import DataError
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=True)
        check_image_size(name, raw, max_pixels)
        with warnings.catch_warnings():
            # PIL only warns between its two bomb thresholds: make that a refusal too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            images, _ = read_images([io.BytesIO(raw)], shape)
    except OptionError:  # (a ValueError too) already says what is wrong
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise OptionError(f"option {name!r}: the image declares too many pixels") from None
    except (binascii.Error, ValueError, DataError):
        raise OptionError(f"option {name!r}: not a base64-encoded PNG or JPEG image") from None
    return images[0]


def check_image_size(name: str, raw: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an encoded image whose header declares more than ``max_pixels`` (one line),
    reading only the header: PIL's ``open`` is lazy, no pixel is decoded here."""
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
    except Image.DecompressionBombError:  # PIL's own header check: far over any bound
        raise OptionError(f"option {name!r}: the image declares too many pixels; send a "
                          "smaller one") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise OptionError(f"option {name!r}: not a base64-encoded PNG or JPEG image") from None
    if width * height > max_pixels:
        raise OptionError(f"option {name!r}: a {width}x{height} image is over this server's "
                          f"{max_pixels} pixels; send a smaller one")


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
