"""What goes over the wire: a sampling request checked, and samples encoded as ``genzoo sample``
writes them. The formats come from the model's modality (``genzoo.samples.Modality``), never
from its name: each writer suffix (``png``: the image grid, ``npz``: the arrays, ``wav``,
``txt``/``jsonl`` ...) answers the bytes ``genzoo sample -o x.SUFFIX`` writes; a modality that
serves its ``sample_suffix`` alone (``serve_single``: audio's ``wav``) answers one sample's
file; ``json`` is every modality's (``Modality.to_json`` per sample, with provenance).
Torch-free at import."""
from __future__ import annotations

import base64
import binascii
import io
import json
import mimetypes
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genzoo.errors import OptionError

if TYPE_CHECKING:
    from genzoo.samples import Modality, Samples

#: The format every modality answers: ``Modality.to_json`` of each sample.
JSON = "json"
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


def served_formats(spec: Modality) -> list[str]:
    """The ``format`` values a model of modality ``spec`` answers, in the order listed: each
    writer's suffix (``png``, ``npz``, ``wav`` ...), the ``sample_suffix`` when no writer
    claims it (one sample's file), then ``json``."""
    names = [suffix.lstrip(".") for suffix in spec.writers()]
    alone = spec.sample_suffix.lstrip(".")
    if alone and alone not in names and spec.encodes():
        names.append(alone)
    return names + [JSON] if JSON not in names else names


def holds_one(spec: Modality, fmt: str) -> bool:
    """Whether ``fmt`` answers ONE sample's file (``encode``): the ``sample_suffix`` of a
    modality that serves it alone (``serve_single``), or that no writer claims."""
    suffix = "." + fmt
    return suffix == spec.sample_suffix and (spec.serve_single or suffix not in spec.writers())


def default_format(spec: Modality) -> str:
    """The format of a request that names none: ``json`` for a modality holding a list of
    values (texts), else its first writer's (images: the PNG grid; audio: one WAV)."""
    formats = served_formats(spec)
    return JSON if spec.holds == "list" else formats[0]


def sample_view(spec: Modality) -> dict[str, Any]:
    """What the gallery needs to show one sample of modality ``spec`` from the ``json``
    format: the response's key (``plural``), the ``gallery_html`` template, the file's
    ``suffix`` and ``content_type`` (for ``{src}``, a data: URL, and ``{name}``), and
    ``json``: ``"file"`` when ``to_json`` is the base64 of ``encode``'s file (the default),
    ``"value"`` when the modality gives the value itself (texts), whose text then is the
    file's content."""
    from genzoo.samples import Modality
    return {"key": spec.plural, "html": spec.gallery_html, "suffix": spec.sample_suffix,
            "content_type": spec.content_type,
            "json": "file" if type(spec).to_json is Modality.to_json else "value"}


def parse_request(body: Any, spec: Modality, limits: Limits) -> SampleRequest:
    """The JSON body's fields checked (strict JSON types) against ``limits`` and what the
    model's modality ``spec`` serves; anything wrong is a one-line ``OptionError`` (the
    server answers 422). The model options are checked later, by the model's schema and
    then ``check_caps``."""
    if not isinstance(body, dict):
        raise OptionError('the body must be a JSON object such as {"n": 4, "seed": 0}')
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise OptionError(f"unknown field(s) {', '.join(map(repr, unknown))}; the body takes "
                          f"{', '.join(sorted(_KEYS))} (model options go in \"options\")")
    formats = served_formats(spec)
    fmt = body.get("format", default_format(spec))
    if not isinstance(fmt, str) or fmt not in formats:
        raise OptionError(f"format {json.dumps(fmt)[:40]} is not served for {spec.plural}: "
                          f"ask for one of {', '.join(formats)}")
    one = holds_one(spec, fmt)
    # a one-sample format without "n" means one sample, not the modality's usual batch
    n = body.get("n", 1 if one else spec.default_n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limits.max_n:
        raise OptionError(f"n must be a whole number from 1 to {limits.max_n}, got {n!r}")
    if one and n != 1:
        many = " or ".join(f'"{f}"' for f in formats if not holds_one(spec, f))
        raise OptionError(f'format "{fmt}" holds one sample, asked for n = {n}: send n = 1, '
                          f'or ask for "format": {many} to get {n} {spec.plural} at once')
    seed = body.get("seed", 0)
    options = body.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):  # [], 0, false and "" are not "no options"
        raise OptionError('"options" must be a JSON object of model options, got '
                          f"{json.dumps(options)[:40]}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):  # 0, 1, "true" are not booleans
        raise OptionError(f'"stream" must be true or false, got {json.dumps(stream)[:40]}')
    if stream and not spec.streams:
        raise OptionError(f'"stream": true is for models whose samples can be shown while '
                          f"they are made; {spec.plural} cannot: leave it out")
    if stream and n != 1:
        raise OptionError(f'"stream": true takes n = 1, asked for n = {n}')
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


def file_bytes(samples: Samples, fmt: str) -> tuple[bytes, str]:
    """``samples`` in the file format ``fmt`` (not ``json``) and its content type: one
    sample's ``encode``-d file for a one-sample format, else exactly what the modality's
    writer for ``.fmt`` writes (``genzoo sample -o x.png`` / ``x.npz`` / ``x.wav`` ...)."""
    spec = samples.spec()
    suffix = "." + fmt
    if holds_one(spec, fmt):
        return spec.encode(samples, 0), spec.content_type
    with tempfile.TemporaryDirectory(prefix="genzoo-serve-") as tmp:
        path = Path(tmp) / f"samples{suffix}"
        samples.save(path)  # the writer `genzoo sample -o x.SUFFIX` uses, and its checks
        return path.read_bytes(), content_type(spec, suffix)


def content_type(spec: Modality, suffix: str) -> str:
    """The HTTP content type of a ``suffix`` file: the modality's own for its
    ``sample_suffix``, else the standard table's (Python's built-in one, not the machine's
    files, so every server answers alike), else ``application/octet-stream``."""
    if suffix == spec.sample_suffix:
        return spec.content_type
    guessed, _ = mimetypes.MimeTypes().guess_type("x" + suffix)
    return guessed or "application/octet-stream"


def json_payload(samples: Samples, name: str, n: int, seed: int, seconds: float) -> dict[str, Any]:
    """The JSON response: each sample as its modality's ``to_json`` value (a base64 PNG per
    image as ``-o dir/`` writes each, a base64 WAV per audio, the texts themselves) under
    the modality's plural (``images``, ``audios``, ``texts``), with the provenance."""
    spec = samples.spec()
    return {"model": name, "n": n, "seed": seed, "seconds": round(seconds, 4),
            "meta": {k: v for k, v in samples.meta.items() if k != "start"},
            "provenance": samples.provenance(),
            spec.plural: [spec.to_json(samples, i) for i in range(len(samples))]}
