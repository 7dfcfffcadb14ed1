"""What a plugin's hooks may return, checked one entry at a time, and the record genzoo keeps
of each plugin (``PluginInfo``) (torch-free).

The plugin manager calls each hook of each plugin on its own and hands the result to the
checks here; a check raises ``TypeError``/``ValueError`` with a one-line message, which the
manager records against the plugin. Nothing here imports a plugin's heavy code: targets are
import strings, imported by ``import_target`` only when they are used.
"""
from __future__ import annotations

import collections.abc
import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Names of feature networks and architectures: no ':' (``timm:NAME`` is a built-in prefix).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ArchInfo:
    """An architecture a plugin registered: cards and config.json name it by ``name``."""

    name: str
    family: str
    target: str  # "package.module:ClassName", imported on first load
    summary: str
    plugin: str


@dataclass(frozen=True)
class FeatureNetInfo:
    """A feature network a plugin registered for evaluation (``genzoo eval --feature NAME``)."""

    name: str
    target: str  # "package.module:factory"; factory(device=...) returns a FeatureNet
    summary: str
    input_shape: tuple[int, ...] | None  # the image shape it takes; None: it resizes any
    plugin: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {"name": self.name, "target": self.target, "summary": self.summary,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "plugin": self.plugin}


@dataclass(frozen=True)
class ModalityInfo:
    """A modality a plugin registered (``GenerativeModel.modality`` names it)."""

    name: str
    target: str  # "package.module:ClassName" of a genzoo.samples.Modality subclass
    summary: str
    plugin: str


@dataclass
class PluginInfo:
    """What ``genzoo plugins`` shows about one entry point."""

    name: str
    distribution: str | None
    version: str | None
    value: str
    #: "ok", "error" (failed), "conflict" (lost a name to a plugin of higher precedence)
    #: or "disabled" (left out by GENZOO_PLUGINS)
    status: str = "ok"
    error: str | None = None
    first_party: bool = False  # a first-party or GENZOO_TRUSTED_PLUGINS plugin
    architectures: list[str] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    feature_nets: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    traceback: str | None = field(default=None, repr=False)  # shown by `genzoo --debug plugins`

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the traceback is left out: see ``--debug``)."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "value": self.value, "status": self.status, "error": self.error,
                "first_party": self.first_party, "architectures": list(self.architectures),
                "cards": list(self.cards), "feature_nets": list(self.feature_nets),
                "modalities": list(self.modalities)}


class BadResult(TypeError):
    """A hook returned a value of the wrong type (recorded against its plugin)."""


def as_list(result: Any) -> list[Any]:
    """A list hook's result as a list: a list, tuple or iterator (consumed here, so that one
    raising midway is the plugin's error); None means nothing. Anything else is a TypeError."""
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return list(result)
    if isinstance(result, collections.abc.Iterator) and not isinstance(result, (str, bytes)):
        return list(result)
    raise BadResult(f"returned {type(result).__name__}, expected a list")


def optional_str(result: Any) -> str | None:
    """``genzoo_detect_arch``'s answer: an architecture name or None."""
    if result is None or isinstance(result, str):
        return result
    raise BadResult(f"returned {type(result).__name__}, expected an architecture name or None")


def optional_names(result: Any) -> list[str] | None:
    """``genzoo_select_files``'s answer: a non-empty list of file names, or None."""
    if result is None:
        return None
    names = as_list(result) if not isinstance(result, (str, bytes, dict)) else None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise BadResult(f"returned {type(result).__name__}{' (empty)' if names == [] else ''}, "
                        "expected a non-empty list of file names or None")
    return names


def _check_target(entry: dict[str, Any], what: str) -> None:
    module, sep, attr = entry["target"].partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{entry['name']!r}: target {entry['target']!r} must look like "
                         f"'package.module:{what}'")


def _require_strings(entry: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(entry, dict):
        raise TypeError(f"expected a dict, got {type(entry).__name__}")
    for key in keys:
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"{entry.get('name', '?')!r}: {key!r} must be a non-empty string")


def arch_info(entry: Any, plugin: str) -> ArchInfo:
    """Check one dict returned by ``genzoo_architectures``."""
    _require_strings(entry, ("name", "family", "target"))
    _check_target(entry, "ClassName")
    return ArchInfo(entry["name"], entry["family"], entry["target"],
                    str(entry.get("summary") or ""), plugin)


def _named_target(entry: Any, what: str, target: str, note: str = "") -> None:
    """Check an entry's ``name`` (letters, digits, '.', '_', '-') and its ``target``."""
    _require_strings(entry, ("name", "target"))
    if not _NAME_RE.match(entry["name"]):
        raise ValueError(f"{entry['name']!r}: a {what} name may hold only letters, digits, "
                         f"'.', '_' and '-'{note}")
    _check_target(entry, target)


def feature_net_info(entry: Any, plugin: str) -> FeatureNetInfo:
    """Check one dict returned by ``genzoo_feature_nets``."""
    _named_target(entry, "feature net", "factory", " (timm:NAME is built in)")
    shape = entry.get("input_shape")
    if shape is not None:
        if not isinstance(shape, (list, tuple)) or not shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"{entry['name']!r}: input_shape must be a list of positive "
                             "integers such as [1, 28, 28], or null")
        shape = tuple(shape)
    return FeatureNetInfo(entry["name"], entry["target"], str(entry.get("summary") or ""),
                          shape, plugin)


def modality_info(entry: Any, plugin: str) -> ModalityInfo:
    """Check one dict returned by ``genzoo_modalities``."""
    _named_target(entry, "modality", "ClassName")
    return ModalityInfo(entry["name"], entry["target"], str(entry.get("summary") or ""), plugin)


def card_entry(entry: Any, base_dir: Path | None) -> dict[str, Any] | Path:
    """One item of ``genzoo_model_cards``: a card dict, or the path of a catalog file
    (relative paths are resolved against the plugin module's folder)."""
    if isinstance(entry, dict):
        return entry
    if isinstance(entry, (str, os.PathLike)):
        path = Path(os.fspath(entry)).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    raise TypeError(f"expected a card dict or the path of a catalog file, got "
                    f"{type(entry).__name__}")


def import_target(target: str) -> Any:
    """The object named by ``"package.module:attr.sub"`` (raises whatever the import raises)."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
