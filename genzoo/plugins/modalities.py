"""The registered modalities as instances, one per name per process (see
``genzoo.samples.Modality`` and the ``genzoo_modalities`` hook)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from genzoo.plugins.manager import get_manager

if TYPE_CHECKING:
    from genzoo.samples import Modality

def get_modality(name: str) -> "Modality":
    """The ``Modality`` registered as ``name``, built once per plugin manager (a manager
    reset, as tests do, sees its own plugins' modalities)."""
    manager = get_manager()
    built: dict[str, Modality] = manager.__dict__.setdefault("_modality_instances", {})
    if name not in built:
        built[name] = manager.load_modality(name)()
    return built[name]


def modality_names() -> list[str]:
    """Every registered modality's name, sorted."""
    return sorted(get_manager().modalities())
