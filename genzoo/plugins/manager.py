"""The plugin manager: finds family plugins through entry points and keeps broken ones isolated.

A plugin is a module named by an entry point in group ``genzoo``; it implements some of the
hooks in ``genzoo.hookspecs``. Each plugin is imported on its own and each hook is called one
plugin at a time; its result is checked there (``genzoo.plugins.entries``). Anything a plugin
raises — at import or in a hook, ``SystemExit`` included, only ``KeyboardInterrupt`` excepted —
and any result of the wrong type is recorded against that plugin (``genzoo plugins`` shows it,
``genzoo --debug plugins`` with its traceback) and never stops the others.

**Precedence** (one rule, never alphabetical): first-party plugins (distributions genzoo,
genzoo-diffusion, genzoo-vae, genzoo-gan, genzoo-textlm) and the entry points named in
``GENZOO_TRUSTED_PLUGINS=a,b`` come first, then every other plugin in discovery order (the
order of ``importlib.metadata.entry_points``, i.e. of ``sys.path``). When two plugins provide
one architecture, card or feature-net name, the earlier one keeps it; the later one is marked
``conflict`` and a one-line warning goes to stderr (logger ``genzoo.plugins.manager``).

``GENZOO_STRICT_PLUGINS=1`` turns every failure and every conflict into a ``PluginError``;
``GENZOO_PLUGINS=a,b`` loads only the entry points named.

The manager discovers and records; it knows nothing of the catalog. ``model_cards`` hands
the plugins' raw card entries to ``genzoo.catalog.registry``, which validates and merges them
and records each bad card or lost name against its plugin here (``record_error``,
``record_conflict``, ``record_card``).

Nothing here imports torch: an architecture is an import string, imported by
``load_arch_class`` only when a model of that architecture is loaded.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pluggy

from genzoo import hookspecs
from genzoo.errors import GenzooError, PluginError, PluginMissingError
from genzoo.plugins.entries import (ArchInfo, BadResult, FeatureNetInfo, ModalityInfo,
                                    PluginInfo, arch_info, as_list, card_entry, feature_net_info,
                                    import_target, modality_info, optional_names, optional_str)

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.model import GenerativeModel

GROUP = "genzoo"
#: Distributions whose plugins rank first (see the precedence rule above).
FIRST_PARTY = frozenset({"genzoo", "genzoo-diffusion", "genzoo-vae", "genzoo-gan",
                         "genzoo-textlm"})
log = logging.getLogger("genzoo.plugins.manager")
__all__ = ["ArchInfo", "FeatureNetInfo", "ModalityInfo", "PluginInfo", "PluginManager", "FIRST_PARTY"]


def _one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` — what a user needs to see of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> list[str] | None:
    env = os.environ.get(name, "").strip()
    return [a.strip() for a in env.split(",") if a.strip()] if env else None


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _normalise(dist: str | None) -> str:
    return (dist or "").lower().replace("_", "-").replace(".", "-")


class PluginManager:
    """Loads the entry points of group ``genzoo`` and calls their hooks one plugin at a time,
    in precedence order (see the module docstring).

    ``entry_points`` replaces discovery (tests pass ``importlib.metadata.EntryPoint`` objects,
    in the order discovery would give); ``strict``, ``allow`` and ``trusted`` default to
    ``GENZOO_STRICT_PLUGINS``, ``GENZOO_PLUGINS`` and ``GENZOO_TRUSTED_PLUGINS``.
    """

    def __init__(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
                 strict: bool | None = None, allow: Iterable[str] | None = None,
                 trusted: Iterable[str] | None = None):
        self.strict = _env_true("GENZOO_STRICT_PLUGINS") if strict is None else strict
        allow = _env_list("GENZOO_PLUGINS") if allow is None else list(allow)
        self.allow = set(allow) if allow is not None else None
        #: The filter as messages name it ("GENZOO_PLUGINS=diffusion"); None without one.
        self.allow_text = None if allow is None else "GENZOO_PLUGINS=" + ",".join(allow)
        trusted = _env_list("GENZOO_TRUSTED_PLUGINS") if trusted is None else trusted
        self.trusted = set(trusted or ())
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=GROUP)
        # A stable sort: first-party and trusted plugins first, the rest in discovery order.
        for ep in sorted(entry_points, key=lambda e: not self._ranks_first(e)):
            self._load(ep)
        self._archs: dict[str, ArchInfo] | None = None
        self._feature_nets: dict[str, FeatureNetInfo] | None = None
        self._modalities: dict[str, ModalityInfo] | None = None
        self._cards: list[tuple[str, dict[str, Any] | Path]] | None = None

    def _ranks_first(self, ep: importlib.metadata.EntryPoint) -> bool:
        return _normalise(_dist_name(ep)) in FIRST_PARTY or ep.name in self.trusted

    # ---- loading ------------------------------------------------------------------------
    def _load(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(name=ep.name, value=ep.value, distribution=_dist_name(ep),
                          version=dist.version if dist is not None else None,
                          first_party=self._ranks_first(ep))
        if ep.name in self.infos:
            other = self.infos[ep.name]
            info.name = f"{ep.name} ({info.distribution or ep.value})"
            self.infos[info.name] = info
            self.record_conflict(info.name, f"entry point name {ep.name!r} is also used by "
                                            f"{other.distribution or other.value}; ignored")
            return
        self.infos[ep.name] = info
        if self.allow is not None and ep.name not in self.allow:
            info.status = "disabled"
            return
        try:
            # A plugin's prints go to stderr: stdout is the command's output (`--json`).
            with contextlib.redirect_stdout(sys.stderr):
                module = ep.load()
            self.pm.register(module, name=ep.name)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit included: third-party code
            self.record_error(ep.name, f"failed to import {ep.value}: {_one_line(e)}", e)

    def _note(self, plugin: str, message: str, status: str, exc: BaseException | None) -> bool:
        """Add ``message`` to the plugin's record; False when it was already there (a rebuilt
        registry reports the same problem again)."""
        info = self.infos.get(plugin)
        if info is None or (info.error and message in info.error.split("; ")):
            return False
        if status == "error" or info.status != "error":
            info.status = status
        info.error = message if info.error is None else f"{info.error}; {message}"
        if exc is not None:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            info.traceback = text if info.traceback is None else info.traceback + "\n" + text
        return True

    def record_error(self, plugin: str, message: str, exc: BaseException | None = None) -> None:
        """Mark ``plugin`` as broken with a one-line ``message``; raise in strict mode."""
        self._note(plugin, message, "error", exc)
        if self.strict:
            raise PluginError(f"plugin {plugin!r}: {message} (GENZOO_STRICT_PLUGINS is set)") from exc

    def record_conflict(self, plugin: str, message: str) -> None:
        """Mark ``plugin`` as having lost a name (one warning line on stderr); raise in strict
        mode."""
        if self.strict:  # the error says it all: no warning line before it
            raise PluginError(f"plugin {plugin!r}: {message} (GENZOO_STRICT_PLUGINS is set)")
        if self._note(plugin, message, "conflict", None):
            log.warning("genzoo: plugin %r: %s", plugin, message)

    def module_folder(self, plugin: str) -> Path | None:
        """The folder of the plugin's module (relative card-file paths are resolved there)."""
        module_file = getattr(self.pm.get_plugin(plugin), "__file__", None)
        return Path(module_file).resolve().parent if module_file else None

    def _call(self, hook_name: str, check: Callable[[Any], Any],
              passthrough: tuple[type, ...] = (), **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call one hook on each plugin in precedence order, yielding ``(plugin,
        check(result))``; the next plugin is called only when the caller asks for it (so
        ``detect_arch`` stops at the first answer, as the hook's spec says).

        pluggy's ``pm.hook.NAME(...)`` would call every plugin in one go, and one raising would
        end the call for all: here each implementation runs on its own. The check runs inside
        the same guard, so a generator that raises while it is consumed or a result of the
        wrong type is that plugin's error, like an exception; one of ``passthrough`` is the
        plugin's deliberate answer and reaches the caller."""
        hook = getattr(self.pm.hook, hook_name)
        order = {name: i for i, name in enumerate(self.infos)}
        impls = sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, 1 << 30))
        for impl in impls:
            try:
                # A private copy of each argument: one plugin cannot change what the next sees.
                args = {a: copy.deepcopy(kwargs[a]) for a in impl.argnames}
                with contextlib.redirect_stdout(sys.stderr):
                    result = check(impl.function(**args))
            except KeyboardInterrupt:
                raise
            except BadResult as e:
                self.record_error(impl.plugin_name, f"hook {hook_name} {e}")
                continue
            except BaseException as e:  # noqa: BLE001 - SystemExit included
                if isinstance(e, passthrough):
                    raise
                self.record_error(impl.plugin_name, f"hook {hook_name} raised {_one_line(e)}", e)
                continue
            yield impl.plugin_name, result

    # ---- what the hooks provide ---------------------------------------------------------
    def _named_entries(self, hook_name: str, parse, what: str) -> dict[str, Any]:
        """Entries of a list hook by name; a later plugin's duplicate is a conflict."""
        found: dict[str, Any] = {}
        for plugin, result in self._call(hook_name, as_list):
            for entry in result:
                try:
                    item = parse(entry, plugin)
                except (TypeError, ValueError) as e:
                    self.record_error(plugin, f"bad {what} entry: {e}")
                    continue
                if item.name in found:
                    self.record_conflict(plugin, f"{what} {item.name!r} is also provided by plugin "
                                                 f"{found[item.name].plugin!r}, which takes "
                                                 "precedence; ignored")
                    continue
                found[item.name] = item
        return found

    def architectures(self) -> dict[str, ArchInfo]:
        """Every architecture registered by a working plugin, by name (precedence decides
        duplicates)."""
        if self._archs is None:
            self._archs = self._named_entries("genzoo_architectures", arch_info, "architecture")
            for arch in self._archs.values():
                self.infos[arch.plugin].architectures.append(arch.name)
        return self._archs

    def feature_nets(self) -> dict[str, FeatureNetInfo]:
        """Every feature network registered by a working plugin, by name."""
        if self._feature_nets is None:
            self._feature_nets = self._named_entries("genzoo_feature_nets", feature_net_info,
                                                     "feature net")
            for net in self._feature_nets.values():
                self.infos[net.plugin].feature_nets.append(net.name)
        return self._feature_nets

    def modalities(self) -> dict[str, ModalityInfo]:
        """Every modality registered by a working plugin, by name. genzoo's own (image, text,
        audio) are always there, even when ``GENZOO_PLUGINS`` leaves its entry point out:
        without them no model could sample."""
        if self._modalities is None:
            found = self._named_entries("genzoo_modalities", modality_info, "modality")
            from genzoo.plugins import core  # genzoo's own hook module: torch-free
            for entry in core.genzoo_modalities():
                found.setdefault(entry["name"], modality_info(entry, "core"))
            for item in found.values():
                if item.plugin in self.infos:
                    self.infos[item.plugin].modalities.append(item.name)
            self._modalities = found
        return self._modalities

    def load_modality(self, name: str):
        """Import the ``Modality`` subclass registered as ``name``; an unknown name or a
        broken target is a one-line ``PluginError``."""
        found = self.modalities()
        if name not in found:
            known = ", ".join(sorted(found))
            raise PluginError(f"no installed plugin provides the modality {name!r} (known: "
                              f"{known}); install the plugin that defines it")
        info = found[name]
        try:
            cls = self._import(info.plugin, f"modality {name!r}", info.target)
            if not _subclass_of(cls, "genzoo.samples", "Modality") or cls.name != name:
                raise PluginError(f"plugin {info.plugin!r}: {info.target} is not a "
                                  f"genzoo.samples.Modality subclass named {name!r}")
        except PluginError as e:  # recorded against the plugin: `genzoo plugins` shows it
            if info.plugin in self.infos:
                self.record_error(info.plugin, str(e).removeprefix(f"plugin {info.plugin!r}: "),
                                  e.__cause__ or e)
            raise
        return cls

    def model_cards(self) -> list[tuple[str, dict[str, Any] | Path]]:
        """What plugins' ``genzoo_model_cards`` return, unvalidated, as ``[(plugin, card dict
        or catalog path)]`` in precedence order. The catalog (``genzoo.catalog.registry``)
        validates and merges them and records what is wrong through ``record_error``,
        ``record_conflict`` and ``record_card``."""
        if self._cards is None:
            cards = []
            for plugin, result in self._call("genzoo_model_cards", as_list):
                for entry in result:
                    try:
                        cards.append((plugin, card_entry(entry, self.module_folder(plugin))))
                    except TypeError as e:
                        self.record_error(plugin, f"bad model card entry: {e}")
            self._cards = cards
        return self._cards

    def record_card(self, plugin: str, name: str) -> None:
        """Note that card ``name`` of ``plugin`` made it into the catalog (``genzoo plugins``
        lists it); a rebuilt catalog noting it again changes nothing."""
        info = self.infos.get(plugin)
        if info is not None and name not in info.cards:
            info.cards.append(name)

    def info(self, plugin: str) -> PluginInfo | None:
        """The record of one entry point (None for a name never seen)."""
        return self.infos.get(plugin)

    def left_out(self) -> list[str]:
        """The entry points that ``GENZOO_PLUGINS`` (or ``allow``) leaves out, in precedence
        order: they are seen, never imported."""
        return [i.name for i in self.infos.values() if i.status == "disabled"]

    def left_out_owner(self, name: str) -> str | None:
        """The left-out entry point that most likely provides model or architecture ``name``,
        judged by name alone (first-party names start with their plugin's: ``gan-mnist``,
        ``gan-dcgan``): a left-out plugin is never imported, not even to ask it."""
        lowered = name.lower()
        for plugin in self.left_out():
            if lowered == plugin.lower() or lowered.startswith(plugin.lower() + "-"):
                return plugin
        return None

    def filter_message(self, name: str) -> str | None:
        """One line saying that the plugin filter hides ``name`` (see ``left_out_owner``), or
        None when no left-out plugin seems to provide it."""
        owner = self.left_out_owner(name)
        if owner is None:
            return None
        return (f"{name}'s plugin is not loaded: {self.allow_text} leaves it out; unset "
                f"GENZOO_PLUGINS or add {owner} to it")

    def filter_clause(self) -> str:
        """``" (GENZOO_PLUGINS=a leaves out plugin(s) b, c)"``, empty without a filter that
        leaves something out: an unknown name may belong to one of them."""
        left = self.left_out()
        return f" ({self.allow_text} leaves out plugin(s) {', '.join(left)})" if left else ""

    def detect_arch(self, config: dict[str, Any], filenames: list[str]) -> str | None:
        """The architecture of a folder without a ``genzoo`` section (first plugin that knows,
        in precedence order)."""
        archs = self.architectures()
        for plugin, answer in self._call("genzoo_detect_arch", optional_str, config=config,
                                         filenames=list(filenames)):
            if answer is None:
                continue
            if answer in archs:
                return answer
            self.record_error(plugin, "genzoo_detect_arch answered unknown architecture "
                                      f"{answer!r}")
        return None

    def select_files(self, filenames: list[str], read_json: Callable[[str], Any],
                     dtype: str | None) -> list[str] | None:
        """The files of a Hub repository a plugin's model needs (first plugin that answers, in
        precedence order); None when none does. A GenzooError a plugin raises is its refusal
        of the repository and reaches the caller."""
        known = set(filenames)
        for plugin, answer in self._call("genzoo_select_files", optional_names, (GenzooError,),
                                         filenames=list(filenames), read_json=read_json,
                                         dtype=dtype):
            if answer is None:
                continue
            stray = [a for a in answer if a not in known]
            if not stray:
                return answer
            self.record_error(plugin, f"genzoo_select_files chose {stray[0]!r}, which is not "
                                      "in the repository")
        return None

    def plugins(self) -> list[PluginInfo]:
        """Every entry point seen, with its status. Architectures, feature nets and modalities
        are collected first (a modality's class is imported too: it is light, and one that
        cannot be used should show before a model of it samples), so a hook or target that
        fails or loses a name shows here; cards show once the catalog has been built
        (``genzoo.api.plugin_infos`` builds it first)."""
        self.architectures()
        self.feature_nets()
        for name in self.modalities():  # their classes are light: a broken one shows here
            try:
                self.load_modality(name)
            except PluginError:
                if self.strict:
                    raise
        return list(self.infos.values())

    def load_arch_class(self, arch: str,
                        package_hint: str | None = None) -> type[GenerativeModel]:
        """Import the class of ``arch``; a missing plugin names the ``pip install`` line."""
        archs = self.architectures()
        if arch not in archs and self.filter_message(arch):
            raise PluginMissingError(f"architecture {self.filter_message(arch)}")
        if arch not in archs:
            package = package_hint or _guess_package(arch)
            broken = [i.name for i in self.infos.values() if i.status == "error"]
            hint = (f" (plugin(s) {', '.join(broken)} failed to load: see `genzoo plugins`)"
                    if broken else "")
            raise PluginMissingError(f"architecture {arch!r} is not installed: "
                                     f"pip install {package}{hint}{self.filter_clause()}")
        info = archs[arch]
        obj = self._import(info.plugin, f"architecture {arch!r}", info.target)
        if not _subclass_of(obj, "genzoo.model", "GenerativeModel"):
            raise PluginError(f"plugin {info.plugin!r}: {info.target} is not a "
                              "genzoo.GenerativeModel subclass")
        return obj

    def load_feature_net(self, name: str):
        """Import the factory of feature net ``name`` (a registered name; see ``feature_nets``)."""
        info = self.feature_nets()[name]
        return self._import(info.plugin, f"feature net {name!r}", info.target)

    @staticmethod
    def _import(plugin: str, what: str, target: str):
        try:
            return import_target(target)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - report which plugin is broken, in one line
            raise PluginError(f"plugin {plugin!r} cannot import {what} ({target}): "
                              f"{_one_line(e)}") from e


def _subclass_of(obj: Any, module: str, name: str) -> bool:
    """Whether ``obj`` is a subclass of ``module.name``. A subclass's import has imported
    ``module`` already, so it is looked up in ``sys.modules``, not imported: the plugins sit
    below the contract's model and samples modules and must not import them."""
    base = getattr(sys.modules.get(module), name, None)
    return isinstance(obj, type) and base is not None and issubclass(obj, base)


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


def feature_nets() -> dict[str, FeatureNetInfo]:
    """Every registered feature network, by name."""
    return get_manager().feature_nets()


def plugins() -> list[PluginInfo]:
    """Every plugin entry point with its status."""
    return get_manager().plugins()


def load_arch_class(arch: str, package_hint: str | None = None) -> type[GenerativeModel]:
    """Import and return the ``GenerativeModel`` subclass of ``arch``."""
    return get_manager().load_arch_class(arch, package_hint)


def detect_arch(config: dict[str, Any], filenames: list[str]) -> str | None:
    """Ask the plugins which architecture a foreign-layout folder holds."""
    return get_manager().detect_arch(config, filenames)


def select_files(filenames: list[str], read_json: Callable[[str], Any],
                 dtype: str | None) -> list[str] | None:
    """Ask the plugins which files of a Hub repository to fetch (None: no plugin knows it)."""
    return get_manager().select_files(filenames, read_json, dtype)
