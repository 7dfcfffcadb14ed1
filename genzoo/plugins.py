"""The plugin manager: finds family plugins through entry points and keeps broken ones isolated.

A plugin is a module named by an entry point in group ``genzoo``; it implements some of the
hooks in ``genzoo.hookspecs``. Each plugin is imported on its own and each hook is called one
plugin at a time, so a plugin that fails to import or whose hook raises is recorded (see
``genzoo plugins``) and never stops the others. ``GENZOO_STRICT_PLUGINS=1`` turns such a failure
into a ``PluginError``; ``GENZOO_PLUGINS=a,b`` loads only the entry points named.

Nothing here imports torch: an architecture is an import string, imported by
``load_arch_class`` only when a model of that architecture is loaded.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, PluginMissingError

GROUP = "genzoo"


@dataclass
class PluginInfo:
    """What ``genzoo plugins`` shows about one entry point."""

    name: str
    distribution: str | None
    version: str | None
    value: str
    status: str = "ok"  # "ok", "error" or "disabled" (left out by GENZOO_PLUGINS)
    error: str | None = None
    architectures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "value": self.value, "status": self.status, "error": self.error,
                "architectures": list(self.architectures)}


@dataclass(frozen=True)
class ArchInfo:
    """An architecture a plugin registered: cards and config.json name it by ``name``."""

    name: str
    family: str
    target: str  # "package.module:ClassName", imported on first load
    summary: str
    plugin: str


def _one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` — what a user needs to see of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class PluginManager:
    """Loads the entry points of group ``genzoo`` and calls their hooks one plugin at a time.

    ``entry_points`` replaces discovery (tests pass ``importlib.metadata.EntryPoint`` objects);
    ``strict`` and ``allow`` default to ``GENZOO_STRICT_PLUGINS`` and ``GENZOO_PLUGINS``.
    """

    def __init__(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
                 strict: bool | None = None, allow: Iterable[str] | None = None):
        self.strict = _env_true("GENZOO_STRICT_PLUGINS") if strict is None else strict
        if allow is None:
            env = os.environ.get("GENZOO_PLUGINS", "").strip()
            allow = [a.strip() for a in env.split(",") if a.strip()] if env else None
        self.allow = set(allow) if allow is not None else None
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=GROUP)
        # Sorted so that "first plugin wins" (duplicate architectures) is deterministic.
        for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
            self._load(ep)
        self._archs: dict[str, ArchInfo] | None = None
        self._cards: list[tuple[str, dict[str, Any]]] | None = None

    # ---- loading ------------------------------------------------------------------------
    def _load(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(name=ep.name, value=ep.value,
                          distribution=dist.metadata["Name"] if dist is not None else None,
                          version=dist.version if dist is not None else None)
        if ep.name in self.infos:
            other = self.infos[ep.name]
            info.name = f"{ep.name} ({info.distribution or ep.value})"
            self.infos[info.name] = info
            self.record_error(info.name, f"entry point name {ep.name!r} is also used by "
                                         f"{other.distribution or other.value}; ignored")
            return
        self.infos[ep.name] = info
        if self.allow is not None and ep.name not in self.allow:
            info.status = "disabled"
            return
        try:
            module = ep.load()
            self.pm.register(module, name=ep.name)
        except Exception as e:  # noqa: BLE001 - any failure of third-party code is isolated
            self.record_error(ep.name, f"failed to import {ep.value}: {_one_line(e)}", e)

    def record_error(self, plugin: str, message: str, exc: BaseException | None = None) -> None:
        """Mark ``plugin`` as broken with a one-line ``message``; raise in strict mode."""
        info = self.infos.get(plugin)
        if info is not None:
            info.status = "error"
            info.error = message if info.error is None else f"{info.error}; {message}"
        if self.strict:
            raise PluginError(f"plugin {plugin!r}: {message} (GENZOO_STRICT_PLUGINS is set)") from exc

    def _call(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        """Call one hook on each plugin in turn: ``[(plugin, result)]``; failures are recorded."""
        hook = getattr(self.pm.hook, hook_name)
        order = {name: i for i, name in enumerate(self.infos)}
        impls = sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, 1 << 30))
        results = []
        for impl in impls:
            try:
                args = {a: kwargs[a] for a in impl.argnames}
                results.append((impl.plugin_name, impl.function(**args)))
            except Exception as e:  # noqa: BLE001
                self.record_error(impl.plugin_name, f"hook {hook_name} raised {_one_line(e)}", e)
        return results

    # ---- what the hooks provide ---------------------------------------------------------
    def architectures(self) -> dict[str, ArchInfo]:
        """Every architecture registered by a working plugin, by name (first plugin wins)."""
        if self._archs is not None:
            return self._archs
        archs: dict[str, ArchInfo] = {}
        for plugin, result in self._call("genzoo_architectures"):
            for entry in result or []:
                try:
                    arch = _arch_info(entry, plugin)
                except (TypeError, ValueError) as e:
                    self.record_error(plugin, f"bad architecture entry: {e}")
                    continue
                if arch.name in archs:
                    self.record_error(plugin, f"architecture {arch.name!r} is already provided by "
                                              f"plugin {archs[arch.name].plugin!r}; ignored")
                    continue
                archs[arch.name] = arch
                self.infos[plugin].architectures.append(arch.name)
        self._archs = archs
        return archs

    def model_cards(self) -> list[tuple[str, dict[str, Any]]]:
        """The raw card dicts plugins ship, as ``[(plugin, card)]`` (validated by the registry)."""
        if self._cards is None:
            cards = []
            for plugin, result in self._call("genzoo_model_cards"):
                if not isinstance(result, (list, tuple)):
                    self.record_error(plugin, "genzoo_model_cards must return a list of dicts")
                    continue
                cards.extend((plugin, c) for c in result)
            self._cards = cards
        return self._cards

    def detect_arch(self, config: dict[str, Any], filenames: list[str]) -> str | None:
        """The architecture of a folder without a ``genzoo`` section (first plugin that knows)."""
        archs = self.architectures()
        for plugin, answer in self._call("genzoo_detect_arch", config=config,
                                         filenames=list(filenames)):
            if answer is None:
                continue
            if answer in archs:
                return answer
            self.record_error(plugin, f"genzoo_detect_arch answered unknown architecture {answer!r}")
        return None

    def plugins(self) -> list[PluginInfo]:
        """Every entry point seen, with its status (architectures are collected first)."""
        self.architectures()
        return list(self.infos.values())

    def load_arch_class(self, arch: str, package_hint: str | None = None):
        """Import the class of ``arch``; a missing plugin names the ``pip install`` line."""
        archs = self.architectures()
        if arch not in archs:
            package = package_hint or _guess_package(arch)
            broken = [i.name for i in self.infos.values() if i.status == "error"]
            hint = (f" (plugin(s) {', '.join(broken)} failed to load: see `genzoo plugins`)"
                    if broken else "")
            raise PluginMissingError(f"architecture {arch!r} is not installed: "
                                     f"pip install {package}{hint}")
        info = archs[arch]
        try:
            module_name, _, attr = info.target.partition(":")
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as e:  # noqa: BLE001 - report which plugin is broken, in one line
            raise PluginError(f"plugin {info.plugin!r} cannot import architecture {arch!r} "
                              f"({info.target}): {_one_line(e)}") from e
        from .model import GenerativeModel  # torch: only now that a model is being loaded
        if not (isinstance(obj, type) and issubclass(obj, GenerativeModel)):
            raise PluginError(f"plugin {info.plugin!r}: {info.target} is not a "
                              "genzoo.GenerativeModel subclass")
        return obj


def _arch_info(entry: Any, plugin: str) -> ArchInfo:
    """Check one dict returned by ``genzoo_architectures``."""
    if not isinstance(entry, dict):
        raise TypeError(f"expected a dict, got {type(entry).__name__}")
    for key in ("name", "family", "target"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"{entry.get('name', '?')!r}: {key!r} must be a non-empty string")
    module, sep, attr = entry["target"].partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{entry['name']!r}: target {entry['target']!r} must look like "
                         "'package.module:ClassName'")
    return ArchInfo(entry["name"], entry["family"], entry["target"],
                    str(entry.get("summary") or ""), plugin)


def _guess_package(arch: str) -> str:
    """First-party arch names start with their family: ``diffusion-unet`` -> genzoo-diffusion."""
    return f"genzoo-{arch.split('-')[0]}"


# ---- the per-process manager ------------------------------------------------------------
_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager, created on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER


def reset(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None, *,
          strict: bool | None = None, allow: Iterable[str] | None = None) -> PluginManager | None:
    """Forget the loaded plugins (and with them the cached registry).

    With ``entry_points`` (tests), install a manager built from exactly those entry points;
    otherwise the next call discovers the installed ones again."""
    global _MANAGER
    _MANAGER = None
    if entry_points is not None or strict is not None or allow is not None:
        _MANAGER = PluginManager(entry_points, strict=strict, allow=allow)
    return _MANAGER


def architectures() -> dict[str, ArchInfo]:
    """Every installed architecture, by name."""
    return get_manager().architectures()


def plugins() -> list[PluginInfo]:
    """Every plugin entry point with its status."""
    return get_manager().plugins()


def load_arch_class(arch: str, package_hint: str | None = None):
    """Import and return the ``GenerativeModel`` subclass of ``arch``."""
    return get_manager().load_arch_class(arch, package_hint)


def detect_arch(config: dict[str, Any], filenames: list[str]) -> str | None:
    """Ask the plugins which architecture a foreign-layout folder holds."""
    return get_manager().detect_arch(config, filenames)
