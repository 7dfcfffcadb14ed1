"""Old flat module names (``genzoo.train``, ``genzoo.registry`` ...) kept importable.

genzoo 0.1 was 53 flat modules; the engine, catalog, evaluation, serving, CLI and kit now live
in subpackages. A plugin or script written against the old names keeps working: importing
``genzoo.train`` imports ``genzoo.engine.train`` and registers the same module object under
the old name (so ``monkeypatch`` and ``isinstance`` see one module), with a
``DeprecationWarning`` that names the new home. Nothing is imported until it is asked for.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any, Sequence

#: old module name (under genzoo.) -> its home now
MOVED: dict[str, str] = {
    "cards": "catalog.cards", "registry": "catalog.registry", "hub": "catalog.hub",
    "hub_http": "catalog.hub_http", "integrity": "catalog.integrity", "cache": "catalog.cache",
    "plugin_entries": "plugins.entries", "core_plugin": "plugins.core",
    "train": "engine.train", "train_parts": "engine.parts", "checkpoint": "engine.checkpoint",
    "lora": "engine.lora", "adapter_base": "engine.lora_base",
    "metrics": "eval.metrics", "features": "eval.features", "refstats": "eval.refstats",
    "serve_formats": "serve.formats", "serve_openapi": "serve.openapi",
    "serve_pool": "serve.pool", "serve_queue": "serve.queue",
    "cli_complete": "cli.complete", "cli_eval": "cli.eval", "cli_lora": "cli.lora",
    "cli_model": "cli.model", "cli_options": "cli.options", "cli_plugin": "cli.plugin",
    "cli_serve": "cli.serve",
    "_conformance": "kit.conformance", "_conformance_conditions": "kit.conditions",
    "_conformance_config": "kit.config", "_conformance_train": "kit.train",
    "scaffold": "kit.scaffold",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the target module ran when it was imported


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``genzoo.OLD`` for each name in ``MOVED`` and hands back the new module."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> Any:
        prefix, _, old = fullname.partition(".")
        if prefix != "genzoo" or old not in MOVED:
            return None
        new = f"genzoo.{MOVED[old]}"
        warnings.warn(f"{fullname} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import genzoo`` does this)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
