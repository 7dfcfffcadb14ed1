"""The catalog: model cards merged from registry.yaml, plugins and the user's own catalogs.

A card is data — a name, the architecture that loads it, where its weights are and their
sha256 — and nothing in it is executed. Sources, in precedence order:

1. ``registry.yaml`` shipped with genzoo (inside the wheel, or at the repo root when editable);
   it holds only cards no plugin owns (Hub-hosted ones);
2. what plugins' ``genzoo_model_cards`` hooks return — card dicts or the paths of catalog
   files shipped beside their weights — in plugin precedence order (first-party and
   ``GENZOO_TRUSTED_PLUGINS`` first, then discovery order; see ``genzoo.plugins``);
3. user catalogs: the files in ``GENZOO_REGISTRY`` (os.pathsep-separated), then
   ``$XDG_CONFIG_HOME/genzoo/registry.yaml`` (default ``~/.config/genzoo/registry.yaml``).

The first source to define a name keeps it. A plugin's later duplicate is a conflict recorded
against that plugin; a user catalog's is skipped; both print one warning line naming both
origins. A name twice in one file is an error for that file. A catalog file looks like::

    version: 1
    models:
      - name: vae-mnist
        family: vae
        arch: vae-conv
        source: pkg://genzoo_vae/weights/vae-mnist
        files: {model.safetensors: <sha256>, config.json: <sha256>}

Each card records where it came from: ``origin`` (a label), ``plugin`` (the entry point that
provided it, None for genzoo's and user catalogs) and ``catalog`` (the file it was read from,
None for a card a plugin returned as a dict) — ``genzoo eval --write-card`` writes there.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import RegistryError, UnknownModelError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
log = logging.getLogger("genzoo.registry")


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
    sampling: dict[str, Any] = field(default_factory=dict, hash=False)
    metrics: dict[str, Any] = field(default_factory=dict, hash=False)
    package: str = ""
    origin: str = ""
    plugin: str | None = None
    catalog: str | None = None

    def __post_init__(self):
        if not self.package:  # the pip distribution of the family's plugin
            object.__setattr__(self, "package", f"genzoo-{self.family}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field."""
        return {"name": self.name, "family": self.family, "arch": self.arch,
                "summary": self.summary, "source": self.source, "files": dict(self.files),
                "params": self.params, "size": self.size, "license": self.license,
                "tags": list(self.tags), "sampling": dict(self.sampling),
                "metrics": dict(self.metrics), "package": self.package, "origin": self.origin,
                "plugin": self.plugin, "catalog": self.catalog}


_FIELDS = {"name", "family", "arch", "summary", "source", "files", "params", "size", "license",
           "tags", "sampling", "metrics", "package"}
_REQUIRED = ("name", "family", "arch", "source")


def card_from_dict(entry: Any, origin: str, base_dir: Path | None = None) -> ModelCard:
    """Validate one raw entry; a problem raises RegistryError naming ``origin`` and the entry.

    A relative folder ``source`` is resolved against ``base_dir`` (the catalog's folder)."""
    from .hub import parse_source  # light: no huggingface_hub import

    label = repr(entry.get("name")) if isinstance(entry, dict) and "name" in entry else "entry"

    def bad(msg: str) -> RegistryError:
        return RegistryError(f"{origin}: model {label}: {msg}")

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
    try:
        src = parse_source(entry["source"], base_dir)
    except ValueError as e:
        raise bad(f"source: {e}") from None
    source = str(src.path) if src.kind == "path" else src.text
    files = entry.get("files") or {}
    if not isinstance(files, dict):
        raise bad("files must map file names to sha256 digests")
    for fname, digest in files.items():
        if not isinstance(fname, str) or fname.startswith(("/", "\\", "~")) or ".." in \
                re.split(r"[/\\]", fname):
            raise bad(f"file name {fname!r} must be a relative path inside the model folder")
        if fname.endswith(_PICKLE_SUFFIXES):
            raise bad(f"file {fname!r}: pickle weights are never loaded; use safetensors")
        if digest is None:
            if not src.pinned:
                raise bad(f"file {fname!r} has no sha256; digests may be left out only for "
                          "hf:// sources pinned to a full commit (hf://org/repo@<40-hex sha>)")
        elif not isinstance(digest, str) or not _SHA_RE.match(digest):
            raise bad(f"file {fname!r}: sha256 must be 64 hex characters or null")
    for key in ("params", "size"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise bad(f"{key} must be a non-negative integer or null")
    tags = entry.get("tags") or []
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise bad("tags must be a list of strings")
    for key in ("sampling", "metrics"):
        if not isinstance(entry.get(key) or {}, dict):
            raise bad(f"{key} must be a mapping")
    for key in ("summary", "license", "package"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise bad(f"{key} must be a string")
    return ModelCard(
        name=entry["name"], family=entry["family"], arch=entry["arch"], source=source,
        summary=(entry.get("summary") or "").strip(),
        files={k: (v.lower() if v else None) for k, v in files.items()},
        params=entry.get("params"), size=entry.get("size"), license=entry.get("license"),
        tags=tuple(tags), sampling=dict(entry.get("sampling") or {}),
        metrics=dict(entry.get("metrics") or {}), package=entry.get("package") or "",
        origin=origin)


def _yaml_load(path: Path) -> Any:
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader
    except OSError as e:
        raise RegistryError(f"{path}: cannot read catalog ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RegistryError(f"{path}:{where}: invalid YAML ({problem})") from None


def load_catalog(path: str | os.PathLike, plugin: str | None = None) -> list[ModelCard]:
    """Read and validate one catalog file (``models:`` list); duplicates inside it are errors.

    Each card's ``catalog`` is ``path``; with ``plugin`` (a plugin's own card file) its
    ``plugin`` is set and its ``origin`` names the plugin and the file."""
    path = Path(path)
    data = _yaml_load(path)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise RegistryError(f"{path}: expected a mapping with a 'models:' list of cards")
    cards: list[ModelCard] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("models") or []):
        card = card_from_dict(entry, f"{path} (entry {i + 1})", base_dir=path.parent)
        if card.name in seen:
            raise RegistryError(f"{path}: model {card.name!r} is defined twice in this file")
        seen.add(card.name)
        origin = f"plugin {plugin!r} ({path})" if plugin else card.origin
        cards.append(dataclasses.replace(card, origin=origin, plugin=plugin, catalog=str(path)))
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
    repo_file = Path(__file__).resolve().parent.parent / "registry.yaml"
    return repo_file if repo_file.is_file() else None


def user_catalog_paths() -> list[Path]:
    """``GENZOO_REGISTRY`` files (each must exist), then the config-folder catalog if present."""
    paths = []
    for part in os.environ.get("GENZOO_REGISTRY", "").split(os.pathsep):
        if part.strip():
            p = Path(part.strip()).expanduser()
            if not p.is_file():
                raise RegistryError(f"GENZOO_REGISTRY names {p}, which is not a file")
            paths.append(p)
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    user = Path(config) / "genzoo" / "registry.yaml"
    if user.is_file() and user.resolve() not in {p.resolve() for p in paths}:
        paths.append(user)
    return paths


class Registry:
    """The merged catalog: ``get(name)`` and ``list(pattern, family)``."""

    def __init__(self, cards: list[ModelCard] = ()):
        self._cards: dict[str, ModelCard] = {}
        for card in cards:
            self.add(card)

    def add(self, card: ModelCard) -> None:
        """Add a card; a name already present raises RegistryError naming both origins."""
        if card.name in self._cards:
            raise RegistryError(f"model {card.name!r} is defined twice: in "
                                f"{self._cards[card.name].origin} and in {card.origin}; "
                                "rename or remove one")
        self._cards[card.name] = card

    def get(self, name: str) -> ModelCard:
        """The card called ``name``; unknown names suggest close ones."""
        if name in self._cards:
            return self._cards[name]
        raise UnknownModelError(f"unknown model {name!r}{self.suggest(name)}")

    def suggest(self, name: str) -> str:
        """``"; did you mean: a, b?"`` for names close to ``name`` (empty when none)."""
        names = sorted(self._cards)
        scores = {n: difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio() for n in names}
        best = max(scores.values(), default=0.0)
        # Only names about as close as the best one: a near-typo gets one clear suggestion.
        close = sorted((n for n in names if scores[n] >= max(0.6, best - 0.15)),
                       key=lambda n: -scores[n])
        close += [n for n in names if name.lower() in n.lower() and n not in close]
        if close:
            return f"; did you mean: {', '.join(close[:4])}? (`genzoo list` shows all models)"
        return "; `genzoo list` shows all models"

    def list(self, pattern: str | None = None, family: str | None = None) -> list[ModelCard]:
        """Cards sorted by name; ``pattern`` uses fnmatch wildcards (a plain word matches
        names containing it), ``family`` filters exactly."""
        out = []
        if pattern and not any(c in pattern for c in "*?["):
            pattern = f"*{pattern}*"
        for name in sorted(self._cards):
            card = self._cards[name]
            if family and card.family != family:
                continue
            if pattern and not fnmatch.fnmatchcase(name.lower(), pattern.lower()):
                continue
            out.append(card)
        return out

    def names(self) -> list[str]:
        """Every card name, sorted."""
        return sorted(self._cards)

    def __contains__(self, name: object) -> bool:
        return name in self._cards

    def __len__(self) -> int:
        return len(self._cards)

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self.list())


def build_registry(include_packaged: bool = True, manager=None) -> Registry:
    """Merge every source into a new Registry (uncached), first source first.

    A plugin's invalid card or unreadable card file is recorded against the plugin, and its
    duplicate of an existing name is a conflict recorded against it (``genzoo plugins``);
    a user catalog's duplicate is skipped with a warning. ``manager`` defaults to the
    process-wide plugin manager."""
    from .plugins import get_manager
    reg = Registry()
    packaged = packaged_catalog_path() if include_packaged else None
    if packaged is not None:
        for card in load_catalog(packaged):
            reg.add(card)
    manager = manager or get_manager()
    for plugin, entry in manager.model_cards():
        try:
            if isinstance(entry, dict):
                cards = [dataclasses.replace(card_from_dict(entry, f"plugin {plugin!r}"),
                                             plugin=plugin)]
            else:
                cards = load_catalog(entry, plugin=plugin)
        except RegistryError as e:
            message = str(e).removeprefix(f"plugin {plugin!r}: ")
            manager.record_error(plugin, f"bad model card: {message}", e)
            continue
        for card in cards:
            if card.name in reg:
                manager.record_conflict(plugin, f"model card {card.name!r} is also defined by "
                                                f"{reg.get(card.name).origin}, which takes "
                                                "precedence; ignored")
                continue
            reg.add(card)
            manager.note_card(plugin, card.name)
    for path in user_catalog_paths():
        for card in load_catalog(path):
            if card.name in reg:
                log.warning("genzoo: %s: model %r is already defined by %s; skipped", path,
                            card.name, reg.get(card.name).origin)
                continue
            reg.add(card)
    return reg


_CACHE: tuple[Any, Registry] | None = None


def get_registry() -> Registry:
    """The merged registry, built once per process (rebuilt if the plugin manager or the
    catalog environment variables change, as they do in tests)."""
    global _CACHE
    from .plugins import get_manager
    key = (id(get_manager()), os.environ.get("GENZOO_REGISTRY"),
           os.environ.get("XDG_CONFIG_HOME"), os.path.expanduser("~"))
    if _CACHE is None or _CACHE[0] != key:
        _CACHE = (key, build_registry())
    return _CACHE[1]


def reset() -> None:
    """Forget the cached registry (the next ``get_registry`` reads every source again)."""
    global _CACHE
    _CACHE = None


def update_card(path: str | os.PathLike, name: str, **fields: Any) -> None:
    """Rewrite fields of one card in a catalog file (for release scripts: files, params, size,
    metrics). Leading ``#`` comment lines are kept; the result is validated before writing."""
    import yaml

    from .fsutil import atomic_write_text
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
