"""The catalog: model cards merged from registry.yaml, plugins and the user's own catalogs.

A card is data — a name, the architecture that loads it, where its weights are and their
sha256 — and nothing in it is executed. Sources, in precedence order:

1. ``registry.yaml`` shipped with genzoo (inside the wheel, or at the repo root when editable);
   it holds only cards no plugin owns (Hub-hosted ones);
2. what plugins' ``genzoo_model_cards`` hooks return — card dicts or the paths of catalog
   files shipped beside their weights — in plugin precedence order (first-party and
   ``GENZOO_TRUSTED_PLUGINS`` first, then discovery order; see ``genzoo.plugins.manager``);
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

import difflib
import fnmatch
import logging
import os
import builtins
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

# re-exported (``X as X``): genzoo.catalog.registry is where users and the CLI import these from
from genzoo.catalog.cards import _FIELDS as _FIELDS
from genzoo.catalog.cards import ModelCard as ModelCard
from genzoo.catalog.cards import card_from_dict as card_from_dict
from genzoo.catalog.cards import load_catalog as load_catalog
from genzoo.catalog.cards import packaged_catalog_path as packaged_catalog_path
from genzoo.catalog.cards import update_card as update_card
from genzoo.errors import RegistryError, UnknownModelError

if TYPE_CHECKING:
    from genzoo.plugins.manager import PluginManager

log = logging.getLogger("genzoo.catalog.registry")


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
    """The merged catalog: ``get(name)`` and ``list(pattern, family)``.

    ``manager``, the plugin manager the catalog was built from, lets an unknown name be
    explained by the plugin filter (``GENZOO_PLUGINS``) that left its plugin out."""

    def __init__(self, cards: Iterable[ModelCard] = (),
                 manager: PluginManager | None = None) -> None:
        self._cards: dict[str, ModelCard] = {}
        self.manager = manager
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
        hidden = self.filtered_out(name)
        if hidden:
            raise UnknownModelError(hidden)
        raise UnknownModelError(f"unknown model {shown(name)}{self.suggest(name)}")

    def filtered_out(self, name: str) -> str | None:
        """One line saying that ``GENZOO_PLUGINS`` leaves out the plugin that most likely
        provides ``name`` (its cards are then unknown), else None."""
        return self.manager.filter_message(name) if self.manager is not None else None

    def suggest(self, name: str) -> str:
        """``"; did you mean: a, b?"`` for names close to ``name`` (empty when none), and the
        plugins a filter leaves out, since the name may be one of theirs."""
        left_out = self.manager.filter_clause() if self.manager is not None else ""
        if len(name) > 200:  # no model is named like this; comparing would only cost time
            return f"; `genzoo list` shows all models{left_out}"
        names = sorted(self._cards)
        scores = {n: difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio() for n in names}
        best = max(scores.values(), default=0.0)
        # Only names about as close as the best one: a near-typo gets one clear suggestion.
        close = sorted((n for n in names if scores[n] >= max(0.6, best - 0.15)),
                       key=lambda n: -scores[n])
        close += [n for n in names if name.lower() in n.lower() and n not in close]
        if close:
            return (f"; did you mean: {', '.join(close[:4])}? (`genzoo list` shows all "
                    f"models){left_out}")
        return f"; `genzoo list` shows all models{left_out}"

    def list(self, pattern: str | None = None, family: str | None = None,
             can: str | None = None) -> builtins.list[ModelCard]:
        """Cards sorted by name; ``pattern`` uses fnmatch wildcards (a plain word matches
        names containing it), ``family`` filters exactly, ``can`` keeps the cards listing
        that capability (``label``, ``init``, ``mask``, ``interpolate`` ...)."""
        out = []
        if pattern and not any(c in pattern for c in "*?["):
            pattern = f"*{pattern}*"
        for name in sorted(self._cards):
            card = self._cards[name]
            if family and card.family != family:
                continue
            if can and can not in card.capabilities:
                continue
            if pattern and not fnmatch.fnmatchcase(name.lower(), pattern.lower()):
                continue
            out.append(card)
        return out

    def names(self) -> builtins.list[str]:
        """Every card name, sorted."""
        return sorted(self._cards)

    def __contains__(self, name: object) -> bool:
        return name in self._cards

    def __len__(self) -> int:
        return len(self._cards)

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self.list())


def build_registry(include_packaged: bool = True,
                   manager: PluginManager | None = None) -> Registry:
    """Merge every source into a new Registry (uncached), first source first: genzoo's
    registry.yaml, the plugins' cards (``merge_plugin_cards``), the user's catalogs (a name
    already taken is skipped with a warning). ``manager`` defaults to the process-wide plugin
    manager."""
    from genzoo.plugins.manager import get_manager
    manager = manager or get_manager()
    reg = Registry(manager=manager)
    packaged = packaged_catalog_path() if include_packaged else None
    if packaged is not None:
        for card in load_catalog(packaged):
            reg.add(card)
    merge_plugin_cards(reg, manager)
    for path in user_catalog_paths():
        for card in load_catalog(path):
            if card.name in reg:
                log.warning("genzoo: %s: model %r is already defined by %s; skipped", path,
                            card.name, reg.get(card.name).origin)
                continue
            reg.add(card)
    return reg


def merge_plugin_cards(reg: Registry, manager: PluginManager) -> None:
    """Add what plugins' ``genzoo_model_cards`` returned (``manager.model_cards()``: card
    dicts or catalog files, in plugin precedence order) to ``reg``. Each problem is recorded
    against its plugin through ``manager`` and stops no other card: an invalid card or an
    unreadable file is an error, a name already in ``reg`` (genzoo's own or an earlier
    plugin's) a conflict."""
    for plugin, entry in manager.model_cards():
        try:
            cards = _plugin_entry_cards(plugin, entry)
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
            manager.record_card(plugin, card.name)


def _plugin_entry_cards(plugin: str, entry: dict[str, Any] | Path) -> list[ModelCard]:
    """The validated cards of one item a plugin returned, each labelled with the plugin."""
    if isinstance(entry, dict):
        card = card_from_dict(entry, f"plugin {plugin!r}")
        return [dataclasses.replace(card, plugin=plugin)]
    return [dataclasses.replace(card, origin=f"plugin {plugin!r} ({entry})", plugin=plugin)
            for card in load_catalog(entry)]


def shown(name: str, limit: int = 80) -> str:
    """A name as an error message shows it: quoted, and cut short when it is very long (a
    pasted path or a 300-character typo must still give one readable line)."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"


_CACHE: tuple[Any, Registry] | None = None


def get_registry() -> Registry:
    """The merged registry, built once per process (rebuilt if the plugin manager or the
    catalog environment variables change, as they do in tests)."""
    global _CACHE
    from genzoo.plugins.manager import get_manager
    key = (id(get_manager()), os.environ.get("GENZOO_REGISTRY"),
           os.environ.get("XDG_CONFIG_HOME"), os.path.expanduser("~"))
    if _CACHE is None or _CACHE[0] != key:
        _CACHE = (key, build_registry())
    return _CACHE[1]


def reset() -> None:
    """Forget the cached registry (the next ``get_registry`` reads every source again)."""
    global _CACHE
    _CACHE = None
