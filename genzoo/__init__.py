"""genzoo: a plugin-based zoo of generative models — one API and one CLI for every family.

Importing genzoo is cheap (no torch): the heavy parts load on first use.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (see ``genzoo.hookspecs``).
hookimpl = pluggy.HookimplMarker("genzoo")

__all__ = ["__version__", "hookimpl", "load", "list_models", "model_info", "evaluate",
           "GenerativeModel", "Samples", "TrainStage"]


def __getattr__(name):
    # Lazy attributes keep `import genzoo` (and `genzoo list`) free of torch.
    if name in ("load",):
        from .api import load
        return load
    if name in ("list_models", "model_info"):
        from . import api
        return getattr(api, name)
    if name == "evaluate":
        from .metrics import evaluate
        return evaluate
    if name in ("GenerativeModel", "TrainStage"):
        from . import model
        return getattr(model, name)
    if name == "Samples":
        from .samples import Samples
        return Samples
    raise AttributeError(f"module 'genzoo' has no attribute {name!r}")
