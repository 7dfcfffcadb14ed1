"""`Samples`: what every model's ``sample`` returns — images or texts, plus provenance."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

from genzoo.errors import SampleError

#: The safetensors metadata key holding a ``Samples``' non-tensor fields as JSON.
_FIELDS_KEY = "genzoo_samples"


@dataclass(init=False)
class Samples:
    """What ``sample`` returns: ``n`` samples of one modality, plus provenance.

    ``data`` holds the batch as the modality declares it (``genzoo.samples.Modality``): an
    (n, C, H, W) float tensor in [0, 1] for ``"image"``, a list of strings for ``"text"``, an
    (n, channels, T) float tensor in [-1, 1] for ``"audio"``, or whatever a third party's
    modality holds. ``meta`` records provenance (model, revision, seed, sampler, steps) and the
    modality's metadata (an audio sample's ``sample_rate``); writers put it beside the data.
    ``Samples(images=...)`` and ``Samples(texts=...)`` remain as the image and text shorthands.
    """

    # defaults, so that a dataclass extending Samples may add fields with defaults of its own
    data: Any = None
    modality: str = "image"
    meta: dict[str, Any] = field(default_factory=dict)

    def __init__(self, data: Any = None, modality: str | None = None,
                 meta: dict[str, Any] | None = None, *, images: Any = None,
                 texts: list[str] | None = None):
        if images is not None or texts is not None:
            if data is not None or (images is not None and texts is not None):
                raise TypeError("give Samples one of data=, images= or texts=")
            data, modality = (images, modality or "image") if images is not None else \
                (list(texts or ()), modality or "text")
        self.data = data
        self.modality = modality or "image"
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        shape = getattr(self.data, "shape", None)
        return int(shape[0]) if shape is not None else len(self.data)

    def __getitem__(self, i):
        return self.data[i]

    @property
    def images(self) -> Any:
        """The data when it is a tensor (shorthand kept from when samples were images or
        texts); None for a list."""
        return None if isinstance(self.data, list) else self.data

    @property
    def texts(self) -> list[Any] | None:
        """The data when it is a list (texts, rows ...); None for a tensor."""
        return self.data if isinstance(self.data, list) else None

    @property
    def kind(self) -> str:
        """The modality's name (the older spelling of ``modality``)."""
        return self.modality

    def spec(self) -> "Modality":
        """The registered ``Modality`` these samples belong to (see ``modality``)."""
        return modality(self.modality)

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
        """Tensor samples tiled into one (H', W', C) uint8 array (numpy); images only make
        sense here."""
        from genzoo.writers import grid_array
        return grid_array(self.data, nrow, padding)

    def save(self, path: str | os.PathLike, nrow: int | None = None) -> list[Path]:
        """Save by what ``path`` names, as the modality's writers say: for images ``*.png``
        one grid and ``*.npz`` the array, for texts ``*.txt``/``*.jsonl``, for audio ``*.wav``
        and ``*.npz``; a folder (existing, or a path ending in ``/`` or without a suffix) gets
        one file per sample. Returns the files written (see ``genzoo.writers``, which also
        writes batch by batch as a model samples)."""
        from genzoo.writers import open_writer
        spec = self.spec()
        spec.check_meta(self.meta, os.fspath(path))  # e.g. audio without its sample_rate
        writer = open_writer(path, len(self), spec, nrow)
        try:
            writer.write(self)
            return writer.close()
        except BaseException:
            writer.abort()
            raise


def modality(name: str) -> "Modality":
    """The registered modality called ``name`` (``"image"``, ``"text"``, ``"audio"`` or one a
    plugin adds through ``genzoo_modalities``); an unknown name is a one-line ``PluginError``."""
    from genzoo.plugins.modalities import get_modality  # the contract asks the plugins: a way up
    return get_modality(name)


class Modality:
    """What one kind of sample is, declared once and read by every part of genzoo.

    A modality (image, text, audio, or one a third party adds through the
    ``genzoo_modalities`` hook) says how a batch is held (``holds``, ``layout``,
    ``value_range``), which metadata travels with it (``metadata``: provenance, ``.npz``,
    cards, feature nets), how it is written (``writers``: file suffix -> writer, and
    ``encode``: one sample as one file of ``sample_suffix``/``content_type``, used by folders,
    ``genzoo serve`` and the gallery), how the gallery shows one sample (``gallery_html``),
    which Hugging Face ``pipeline_tags`` a model card gets, and what the conformance kit
    checks (``check``). Core asks these questions and never a modality's name.
    """

    #: The name models declare (``GenerativeModel.modality``) and ``Samples.modality`` holds.
    name: ClassVar[str] = ""
    #: One line for ``genzoo plugins`` and the docs.
    summary: ClassVar[str] = ""
    #: ``"tensor"``: a batch is one float tensor, first dimension n; ``"list"``: n Python values.
    holds: ClassVar[str] = "tensor"
    #: The tensor's dimensions, named (``("n", "C", "H", "W")``); empty for a list.
    layout: ClassVar[tuple[str, ...]] = ()
    #: The range tensor values lie in (``sample`` clamps to it), or None for no bound.
    value_range: ClassVar[tuple[float, float] | None] = None
    #: Metadata every batch must carry in ``Samples.meta`` (from the model's
    #: ``sample_metadata()``), e.g. ``("sample_rate",)``.
    metadata: ClassVar[tuple[str, ...]] = ()
    #: The samples' name in messages and in an ``.npz`` (``"images"``, ``"audios"``).
    plural: ClassVar[str] = "samples"
    #: ``genzoo sample`` without ``-n``/``-o``: how many, and where (None: printed to stdout).
    default_n: ClassVar[int] = 16
    default_output: ClassVar[str | None] = None
    #: The feature network ``genzoo eval`` scores these samples with when neither the command
    #: nor the family's ``eval_defaults`` names one (None: the evaluator decides or refuses).
    default_feature: ClassVar[str | None] = None
    #: Whether one sample can be shown while it is made (text: tokens streamed to a terminal
    #: and over server-sent events).
    streams: ClassVar[bool] = False
    #: One sample as one file (``encode``): its suffix and HTTP content type.
    sample_suffix: ClassVar[str] = ".bin"
    content_type: ClassVar[str] = "application/octet-stream"
    #: Whether ``genzoo serve`` answers the ``sample_suffix`` format with ONE sample's file
    #: (``encode``, ``content_type``; the request must ask n = 1) rather than with the
    #: writer of that suffix (audio: one ``audio/wav`` clip; images keep their PNG grid).
    serve_single: ClassVar[bool] = False
    #: The model card's ``pipeline_tag`` by what conditions the model: ``""`` (nothing),
    #: ``"prompt"``, ``"image"``, ``"label"``; the first that applies wins.
    pipeline_tags: ClassVar[dict[str, str | None]] = {}
    #: A tag cards get when ``pipeline_tags`` gives None (no Hub task fits, e.g. a
    #: class-conditional image model: ``"image-generation"``).
    generation_tag: ClassVar[str | None] = None
    #: The model card's usage snippet: Python after ``model = genzoo.load(...)``.
    usage: ClassVar[str] = "samples = model.sample(4, seed=0)\nsamples.save(\"samples/\")"
    #: How the gallery shows one sample: HTML with ``{src}`` (the sample's file as a data:
    #: URL), ``{name}`` (a file name to download it as) and ``{text}`` (``to_json``'s value);
    #: the gallery escapes every value it substitutes.
    gallery_html: ClassVar[str] = '<a href="{src}" download="{name}">{name}</a>'

    # ---- holding a batch -----------------------------------------------------------------
    def check_batch(self, out: Any, where: str, start: int) -> Any:
        """A family's ``generate`` output as this modality's data: tensors become float32 on
        the CPU, refused when holding NaN or Inf (``SampleError`` naming the sample) and
        clamped to ``value_range``; lists are taken as they are."""
        if self.holds == "list":
            return list(out)
        import torch
        if not isinstance(out, torch.Tensor):
            raise SampleError(f"{where}: generate() returned {type(out).__name__}; {self.plural} "
                              f"are a tensor {_layout(self)} (a plugin bug: report it to the "
                              "plugin's authors)")
        data = out.float().cpu()
        if self.layout and data.dim() != len(self.layout):
            raise SampleError(f"{where}: generate() returned a tensor shaped "
                              f"{tuple(data.shape)}; {self.plural} are {_layout(self)}")
        if not torch.isfinite(data).all():
            bad = start + int((~torch.isfinite(data)).flatten(1).any(1).nonzero()[0])
            raise SampleError(f"{where}: sample {bad} holds NaN or Inf values; nothing was "
                              "written (corrupt weights or an extreme option: try the "
                              "defaults, or re-download the model)")
        return data.clamp(*self.value_range) if self.value_range else data

    def check_meta(self, meta: dict[str, Any], where: str) -> None:
        """Refuse, in one line, metadata lacking what ``metadata`` names."""
        missing = [k for k in self.metadata if meta.get(k) is None]
        if missing:
            raise SampleError(f"{where}: {self.plural} need {', '.join(missing)}, which the "
                              "model's sample_metadata() does not give (a plugin bug: report "
                              "it to the plugin's authors)")

    def concat(self, parts: list[Any]) -> Any:
        """Several batches' data as one."""
        if self.holds == "list":
            return [x for p in parts for x in p]
        import torch
        return torch.cat(parts)

    def empty(self, config: dict[str, Any]) -> Any:
        """No samples (what a rank given none returns)."""
        if self.holds == "list":
            return []
        import torch
        return torch.zeros((0,) * max(1, len(self.layout)))

    # ---- writing -------------------------------------------------------------------------
    def writers(self) -> dict[str, Callable[..., Any]]:
        """File suffix (``".png"``) -> writer factory ``(path, n, nrow) -> genzoo.writers.Writer``.
        A folder target is always served by one ``encode``-d file per sample."""
        return {}

    def encode(self, samples: Samples, i: int) -> bytes:
        """Sample ``i`` of ``samples`` as one file of ``sample_suffix``, provenance inside
        where the format allows it."""
        raise NotImplementedError(f"modality {self.name!r} cannot write one sample as a file")

    def encodes(self) -> bool:
        """Whether this modality writes one sample as one file (overrides ``encode``): what a
        folder output and serving one sample need."""
        return type(self).encode is not Modality.encode

    def to_json(self, samples: Samples, i: int) -> Any:
        """Sample ``i`` as a JSON value (serve's ``json`` format): by default its ``encode``-d
        file in base64."""
        import base64
        return base64.b64encode(self.encode(samples, i)).decode("ascii")

    # ---- the conformance kit -------------------------------------------------------------
    def check(self, samples: Samples) -> None:
        """Assert (``AssertionError`` with a sentence) that ``samples`` keep this modality's
        contract: layout, dtype, range, metadata. The kit calls it on every model."""
        assert samples.modality == self.name, \
            f"samples say modality {samples.modality!r}, the model declares {self.name!r}"
        if self.holds == "list":
            assert isinstance(samples.data, list), f"{self.plural} must be a list"
            return
        import torch
        data = samples.data
        assert isinstance(data, torch.Tensor) and data.dtype == torch.float32, \
            f"{self.plural} must be a float32 tensor, got {type(data).__name__}"
        assert data.dim() == len(self.layout) or not self.layout, \
            f"{self.plural} must be {_layout(self)}, got shape {tuple(data.shape)}"
        if self.value_range and data.numel():
            lo, hi = self.value_range
            assert lo <= float(data.min()) and float(data.max()) <= hi, \
                f"{self.plural} must lie in [{lo}, {hi}]"
        for key in self.metadata:
            assert samples.meta.get(key) is not None, f"{self.plural} must carry meta[{key!r}]"

    def describe(self) -> dict[str, Any]:
        """The declaration as data (``genzoo plugins --json``, docs)."""
        return {"name": self.name, "summary": self.summary, "holds": self.holds,
                "layout": list(self.layout), "value_range": list(self.value_range or ()) or None,
                "metadata": list(self.metadata), "writers": sorted(self.writers()),
                "sample_suffix": self.sample_suffix, "content_type": self.content_type}


def _layout(m: Modality) -> str:
    rng = f" in [{m.value_range[0]:g}, {m.value_range[1]:g}]" if m.value_range else ""
    return f"({', '.join(m.layout)}){rng}"
