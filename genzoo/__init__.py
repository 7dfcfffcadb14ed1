"""genzoo: a plugin-based zoo of generative models — one API and one CLI for every family.

Importing genzoo is cheap (no torch): the heavy parts load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # what mypy sees; at run time __getattr__ imports these on first use
    from .api import list_models, load, model_info
    from .metrics import evaluate
    from .model import GenerativeModel, TrainStage
    from .samples import Samples

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (see ``genzoo.hookspecs``).
hookimpl = pluggy.HookimplMarker("genzoo")

__all__ = ["__version__", "hookimpl", "load", "list_models", "model_info", "evaluate",
           "GenerativeModel", "Samples", "TrainStage"]


def __getattr__(name: str) -> Any:
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
