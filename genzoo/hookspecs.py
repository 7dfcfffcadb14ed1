"""The plugin contract: pluggy hook specifications for project ``genzoo``.

A plugin distribution declares ``[project.entry-points.genzoo] NAME = "pkg.module"``; that
module implements some of these hooks with ``@genzoo.hookimpl``. Importing the module must be
cheap (no torch): heavy code is named by an import string and imported on first ``load``.
Each plugin's hooks are called one plugin at a time, so one that raises is recorded (see
``genzoo plugins``) and the others still work.
"""
from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("genzoo")


@hookspec
def genzoo_architectures() -> list[dict[str, Any]]:
    """Return the architectures this plugin provides, as a list of dicts.

    Each dict has:

    - ``name`` (str): the architecture name that cards and config.json refer to,
      e.g. ``"diffusion-unet"``; unique across all plugins.
    - ``family`` (str): ``"diffusion"``, ``"vae"``, ``"gan"``, ``"textlm"`` or a new family.
    - ``target`` (str): import string ``"package.module:ClassName"`` of a
      ``genzoo.GenerativeModel`` subclass; imported only when a model of this arch loads.
    - ``summary`` (str, optional): one line for ``genzoo plugins``.
    """


@hookspec
def genzoo_model_cards() -> list[dict[str, Any]]:
    """Return model cards (catalog entries) this plugin ships, as a list of dicts.

    Fields are those of ``registry.yaml`` entries (see ``genzoo.registry.ModelCard``):
    ``name``, ``family``, ``arch``, ``summary``, ``source`` (``hf://org/repo@commit``, a
    folder, or ``pkg://package/path`` for weights bundled inside the plugin package),
    ``files`` (file name -> sha256), ``license``, ``tags``, ``sampling``, ``metrics``.
    Cards are data: nothing in them is executed.
    """


@hookspec(firstresult=True)
def genzoo_detect_arch(config: dict[str, Any], filenames: list[str]) -> str | None:
    """Name the architecture of a model folder that has no ``genzoo`` section in config.json.

    Called for folders or Hub repos in another ecosystem's layout (a diffusers UNet, a
    transformers causal LM). ``config`` is the parsed config.json (empty when absent) and
    ``filenames`` the files present. Return an architecture name this plugin registered, or
    None when the layout is not yours. The first non-None answer wins.
    """
