"""genzoo: a plugin-based zoo of generative models — one API and one CLI for every family.

Importing genzoo is cheap (no torch): the heavy parts load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from genzoo import _moved

if TYPE_CHECKING:  # what mypy sees; at run time __getattr__ imports these on first use
    from genzoo.api import evaluate, list_models, load, model_info
    from genzoo.engine.train import finetune
    from genzoo.model import GenerativeModel, TrainStage
    from genzoo.samples import Samples

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (see ``genzoo.hookspecs``).
hookimpl = pluggy.HookimplMarker("genzoo")

# genzoo.train, genzoo.registry ... (the flat names of 0.1) still import, with a warning.
_moved.install()

__all__ = ["__version__", "hookimpl", "load", "list_models", "model_info", "evaluate",
           "finetune", "GenerativeModel", "Samples", "TrainStage"]


def __getattr__(name: str) -> Any:
    # Lazy attributes keep `import genzoo` (and `genzoo list`) free of torch.
    if name in ("load",):
        from genzoo.api import load
        return load
    if name in ("list_models", "model_info", "evaluate"):  # the API resolves names
        from genzoo import api
        return getattr(api, name)
    if name == "finetune":
        from genzoo.engine.train import finetune
        return finetune
    if name in ("GenerativeModel", "TrainStage"):
        from genzoo import model
        return getattr(model, name)
    if name == "Samples":
        from genzoo.samples import Samples
        return Samples
    raise AttributeError(f"module 'genzoo' has no attribute {name!r}")
