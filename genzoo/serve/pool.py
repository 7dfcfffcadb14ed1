"""The models a server holds: loaded once, kept, the least recently used evicted past a budget.

Only catalog names (restricted by ``--models PATTERN``) are served; a local folder only when
the server was started with ``--allow-folders``. No request ever names a file-system path
otherwise: a name that is not in the served catalog is a 404.
"""
from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from genzoo.errors import UnknownModelError


def model_bytes(model: Any) -> int:
    """Bytes held by a model's parameters and buffers (what keeping it loaded costs)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelPool:
    """Loads models by name on first use and keeps them; past ``budget_bytes`` the least
    recently used ones are dropped (the one just asked for always stays)."""

    def __init__(self, patterns: str | None = None, allow_folders: bool = False,
                 budget_bytes: int = 2 << 30, device: str = "auto", dtype: str = "auto"):
        self.patterns = [p for p in (patterns or "").split(",") if p.strip()]
        self.allow_folders = allow_folders
        self.budget_bytes = budget_bytes
        self.device, self.dtype = device, dtype
        self._models: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def names(self) -> list[str]:
        """The catalog names this server serves, sorted."""
        from genzoo.api import list_models
        return [c.name for c in list_models() if self._matches(c.name)]

    def _matches(self, name: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(name, p.strip()) or
                                        (not any(ch in p for ch in "*?[") and p.strip() in name)
                                        for p in self.patterns)

    def check(self, name: str) -> str:
        """``name`` if this server serves it, else a one-line ``UnknownModelError`` (404)."""
        from genzoo.catalog.registry import get_registry
        if name in get_registry() and self._matches(name):
            return name
        if self.allow_folders and os.path.isabs(name) and Path(name).is_dir():
            return name
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise UnknownModelError(f"{shown!r} is not a model this server serves; "
                                "GET /v1/models lists them")

    def get(self, name: str) -> Any:
        """The loaded model called ``name`` (loading it on first use; thread-safe)."""
        name = self.check(name)
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name][0]
            from genzoo.api import load
            model = load(name, device=self.device, dtype=self.dtype)
            self.loads += 1
            self._models[name] = (model, model_bytes(model))
            self._evict()
            return model

    def _evict(self) -> None:
        """Drop least recently used models until the rest fit the budget (keep at least one)."""
        while len(self._models) > 1 and sum(b for _, b in self._models.values()) > \
                self.budget_bytes:
            self._models.popitem(last=False)
            self.evictions += 1

    def loaded(self) -> list[str]:
        """Names of the models held now, least recently used first."""
        with self._lock:
            return list(self._models)

    def stats(self) -> dict[str, Any]:
        """Loaded models, their bytes, and load/eviction counts (for /healthz)."""
        with self._lock:
            return {"loaded": list(self._models), "loads": self.loads,
                    "evictions": self.evictions,
                    "bytes": sum(b for _, b in self._models.values()),
                    "budget_bytes": self.budget_bytes}


def rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux's /proc; None elsewhere), for /healthz."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
