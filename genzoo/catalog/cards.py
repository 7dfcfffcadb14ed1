"""Model cards as data: the ``ModelCard`` record, validation of one entry, catalog files
(``version: 1`` + ``models:``; genzoo's registry.yaml, a plugin's ``weights/cards.yaml``, a
user's catalog) and ``update_card`` for release scripts.

Nothing here knows where cards come from or how sources merge: ``genzoo.catalog.registry`` is
the one place that merges genzoo's registry.yaml, plugins' cards and user catalogs, and records
a plugin's bad card against that plugin. Nothing imports torch.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from genzoo.errors import RegistryError, UnknownModelError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class ModelCard:
    """One catalog entry. ``origin`` says which file or plugin defined it, ``plugin`` names
    the entry point that provided it (None for genzoo's and user catalogs) and ``catalog`` is
    the file it was read from (None for a card a plugin returned as a dict)."""

    name: str
    family: str
    arch: str
    source: str
    summary: str = ""
    files: dict[str, str | None] = field(default_factory=dict, hash=False)
    params: int | None = None
    size: int | None = None
    license: str | None = None
    tags: tuple[str, ...] = ()
    #: The Hub task the card claims (``text-to-audio`` ...); None: the model's modality and
    #: capabilities decide (``genzoo.modelcard.card_task``).
    pipeline_tag: str | None = None
    #: What the model can be asked for besides plain sampling (label, init, mask,
    #: interpolate ...): its model's ``capabilities``, recorded so listing needs no torch.
    capabilities: tuple[str, ...] = ()
    sampling: dict[str, Any] = field(default_factory=dict, hash=False)
    metrics: dict[str, Any] = field(default_factory=dict, hash=False)
    package: str = ""
    origin: str = ""
    plugin: str | None = None
    catalog: str | None = None

    def __post_init__(self) -> None:
        if not self.package:  # the pip distribution of the family's plugin
            object.__setattr__(self, "package", f"genzoo-{self.family}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field."""
        return {"name": self.name, "family": self.family, "arch": self.arch,
                "summary": self.summary, "source": self.source, "files": dict(self.files),
                "params": self.params, "size": self.size, "license": self.license,
                "tags": list(self.tags), "pipeline_tag": self.pipeline_tag, "capabilities": list(self.capabilities),
                "sampling": dict(self.sampling),
                "metrics": dict(self.metrics), "package": self.package, "origin": self.origin,
                "plugin": self.plugin, "catalog": self.catalog}


_FIELDS = {"name", "family", "arch", "summary", "source", "files", "params", "size", "license",
           "tags", "pipeline_tag", "capabilities", "sampling", "metrics", "package"}
_REQUIRED = ("name", "family", "arch", "source")


def card_from_dict(entry: Any, origin: str, base_dir: Path | None = None) -> ModelCard:
    """Validate one raw entry; a problem raises RegistryError naming ``origin`` and the entry.

    A relative folder ``source`` is resolved against ``base_dir`` (the catalog's folder)."""
    from genzoo.catalog.hub import parse_source  # light: no huggingface_hub import

    label = repr(entry.get("name")) if isinstance(entry, dict) and "name" in entry else "entry"

    def bad(msg: str) -> RegistryError:
        return RegistryError(f"{origin}: model {label}: {msg}")

    _check_required(entry, bad)
    try:
        src = parse_source(entry["source"], base_dir)
    except ValueError as e:
        raise bad(f"source: {e}") from None
    files = entry.get("files") or {}
    _check_files(files, src.pinned, bad)
    _check_optional(entry, bad)
    return ModelCard(
        name=entry["name"], family=entry["family"], arch=entry["arch"],
        source=str(src.path) if src.kind == "path" else src.text,
        summary=(entry.get("summary") or "").strip(),
        files={k: (v.lower() if v else None) for k, v in files.items()},
        params=entry.get("params"), size=entry.get("size"), license=entry.get("license"),
        tags=tuple(entry.get("tags") or ()), pipeline_tag=entry.get("pipeline_tag"),
        capabilities=tuple(entry.get("capabilities") or ()),
        sampling=dict(entry.get("sampling") or {}),
        metrics=dict(entry.get("metrics") or {}), package=entry.get("package") or "",
        origin=origin)


def _check_required(entry: Any, bad: Callable[[str], RegistryError]) -> None:
    """A mapping of known fields whose required ones are non-empty strings and whose name is
    one a file system and a command line take as it is."""
    if not isinstance(entry, dict):
        raise bad(f"expected a mapping of card fields, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(map(str, unknown))}; "
                  f"allowed: {', '.join(sorted(_FIELDS))}")
    for key in _REQUIRED:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise bad(f"{key!r} is required and must be a non-empty string")
    if not _NAME_RE.match(entry["name"]):
        raise bad("name may hold only letters, digits, '.', '_' and '-'")


def _check_files(files: Any, pinned: bool, bad: Callable[[str], RegistryError]) -> None:
    """``files`` maps relative, non-pickle file names to sha256 digests; a digest may be left
    out only when the source is pinned to a Hub commit (the commit then fixes the bytes)."""
    if not isinstance(files, dict):
        raise bad("files must map file names to sha256 digests")
    for fname, digest in files.items():
        if not isinstance(fname, str) or fname.startswith(("/", "\\", "~")) or ".." in \
                re.split(r"[/\\]", fname):
            raise bad(f"file name {fname!r} must be a relative path inside the model folder")
        if fname.endswith(_PICKLE_SUFFIXES):
            raise bad(f"file {fname!r}: pickle weights are never loaded; use safetensors")
        if digest is None:
            if not pinned:
                raise bad(f"file {fname!r} has no sha256; digests may be left out only for "
                          "hf:// sources pinned to a full commit (hf://org/repo@<40-hex sha>)")
        elif not isinstance(digest, str) or not _SHA_RE.match(digest):
            raise bad(f"file {fname!r}: sha256 must be 64 hex characters or null")


def _check_optional(entry: dict[str, Any], bad: Callable[[str], RegistryError]) -> None:
    """The optional fields, when present, have their documented types."""
    for key in ("params", "size"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise bad(f"{key} must be a non-negative integer or null")
    for key in ("tags", "capabilities"):
        items = entry.get(key) or []
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise bad(f"{key} must be a list of strings")
    for key in ("sampling", "metrics"):
        if not isinstance(entry.get(key) or {}, dict):
            raise bad(f"{key} must be a mapping")
    for key in ("summary", "license", "package", "pipeline_tag"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise bad(f"{key} must be a string")


#: A catalog larger than this is refused unread: real ones hold a few KB of cards.
MAX_CATALOG_BYTES = 1 << 20
#: The catalog format versions this genzoo reads.
CATALOG_VERSIONS = (1,)


def _yaml_load(path: Path) -> Any:
    """A catalog file's YAML: at most ``MAX_CATALOG_BYTES``, UTF-8, and without aliases (a
    few hundred bytes of nested aliases expand to gigabytes), else a one-line RegistryError."""
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        size = path.stat().st_size
        if size > MAX_CATALOG_BYTES:
            raise RegistryError(f"{path}: {size} bytes is too large for a catalog (the limit is "
                                f"{MAX_CATALOG_BYTES}); is it the right file?")
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read catalog ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise RegistryError(f"{path}: not UTF-8 text (byte {e.start}); save the catalog as "
                            "UTF-8") from None
    try:
        for event in yaml.parse(text, Loader=loader):  # events only: nothing is expanded yet
            if isinstance(event, yaml.AliasEvent):
                raise RegistryError(f"{path}: YAML aliases (*name) are not allowed in catalogs; "
                                    "write each card out in full")
        return yaml.load(text, Loader=loader)  # noqa: S506 - safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegistryError(f"{path}:{where}: invalid YAML ({problem})") from None


def load_catalog(path: str | os.PathLike[str]) -> list[ModelCard]:
    """Read and validate one catalog file (``models:`` list); duplicates inside it are errors.

    Each card's ``catalog`` is ``path``."""
    path = Path(path)
    data = _yaml_load(path)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise RegistryError(f"{path}: expected a mapping with a 'models:' list of cards")
    version = data.get("version", 1)
    if version not in CATALOG_VERSIONS:
        raise RegistryError(f"{path}: catalog version {version!r} is not one this genzoo reads "
                            f"({', '.join(map(str, CATALOG_VERSIONS))}); upgrade genzoo or fix "
                            "the file")
    cards: list[ModelCard] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("models") or []):
        card = card_from_dict(entry, f"{path} (entry {i + 1})", base_dir=path.parent)
        if card.name in seen:
            raise RegistryError(f"{path}: model {card.name!r} is defined twice in this file")
        seen.add(card.name)
        cards.append(dataclasses.replace(card, catalog=str(path)))
    return cards


def packaged_catalog_path() -> Path | None:
    """genzoo's own registry.yaml: inside the installed package (wheel), else the repo root
    beside the package folder (editable install)."""
    import importlib.resources
    try:
        res = importlib.resources.files("genzoo") / "registry.yaml"
        if res.is_file():
            return Path(str(res))
    except (ModuleNotFoundError, OSError):
        pass
    repo_file = Path(__file__).resolve().parents[2] / "registry.yaml"
    return repo_file if repo_file.is_file() else None


def update_card(path: str | os.PathLike[str], name: str, **fields: Any) -> None:
    """Rewrite fields of one card in a catalog file (for release scripts: files, params, size,
    metrics). Leading ``#`` comment lines are kept; the result is validated before writing."""
    import yaml

    from genzoo.fsutil import atomic_write_text
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    for entry in data.get("models", []):
        if entry.get("name") == name:
            entry.update(fields)
            break
    else:
        raise UnknownModelError(f"{path}: no model {name!r} to update")
    for i, entry in enumerate(data["models"]):  # validate before writing anything
        card_from_dict(entry, f"{path} (entry {i + 1})", base_dir=path.parent)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    atomic_write_text(path, _leading_comments(text) + body)


def _leading_comments(text: str) -> str:
    """The block of ``#`` comment (and blank) lines at the top of a YAML file."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") or not line.strip():
            out.append(line)
        else:
            break
    return "".join(out)
