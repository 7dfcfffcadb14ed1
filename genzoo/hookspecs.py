"""The plugin contract: pluggy hook specifications for project ``genzoo``.

A plugin distribution declares ``[project.entry-points.genzoo] NAME = "pkg.module"``; that
module implements some of these hooks with ``@genzoo.hookimpl``. Importing the module must be
cheap (no torch): heavy code is named by an import string and imported on first use.

**How hooks are called.** genzoo's plugin manager (``genzoo.plugins.manager``) never calls
``pm.hook.NAME(...)`` as a whole: it calls each plugin's implementation on its own, in
precedence order, with a private copy of the arguments, and checks each result there, so a
plugin that raises (``SystemExit`` included) or returns the wrong type is recorded against
itself (see ``genzoo plugins``) and the others still work. pluggy's call options therefore
do not apply (no ``firstresult``, no ``hookwrapper`` ordering): the list hooks gather every
plugin's entries, and ``genzoo_detect_arch`` and ``genzoo_select_files`` take the first
answer that is not None. Names are unique across plugins; when two
plugins provide one name, **precedence** decides: first-party plugins (genzoo,
genzoo-diffusion, genzoo-vae, genzoo-gan, genzoo-textlm) and the entry points named in
``GENZOO_TRUSTED_PLUGINS`` first, then the others in discovery order (``sys.path`` order) —
never by alphabet. The loser is marked ``conflict``, with one warning line on stderr.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("genzoo")


@hookspec
def genzoo_architectures() -> list[dict[str, Any]]:
    """Return the architectures this plugin provides, as a list of dicts.

    Each dict has:

    - ``name`` (str): the architecture name that cards and config.json refer to,
      e.g. ``"diffusion-unet"``; unique across all plugins (precedence decides duplicates).
    - ``family`` (str): ``"diffusion"``, ``"vae"``, ``"gan"``, ``"textlm"`` or a new family.
    - ``target`` (str): import string ``"package.module:ClassName"`` of a
      ``genzoo.GenerativeModel`` subclass; imported only when a model of this arch loads.
    - ``summary`` (str, optional): one line for ``genzoo plugins``.
    """


@hookspec
def genzoo_model_cards() -> list[dict[str, Any] | str | os.PathLike]:
    """Return the model cards (catalog entries) this plugin ships.

    Each item is either a card dict or the path (str or ``os.PathLike``; a relative path is
    taken from the plugin module's folder) of a catalog file in ``registry.yaml``'s format
    (``version: 1`` and a ``models:`` list), typically ``weights/cards.yaml`` beside the
    weights — the way first-party plugins ship theirs, so their digests are released with
    them and ``genzoo eval --write-card`` can update the file. Card fields are those of
    ``genzoo.catalog.registry.ModelCard``: ``name``, ``family``, ``arch``, ``summary``, ``source``
    (``hf://org/repo@commit``, a folder relative to the catalog file, or
    ``pkg://package/path`` for weights bundled inside the plugin package), ``files``
    (file name -> sha256), ``license``, ``tags``, ``sampling``, ``metrics``, ``package``.
    Cards are data: nothing in them is executed.
    """


@hookspec
def genzoo_feature_nets() -> list[dict[str, Any]]:
    """Return the feature networks this plugin provides for evaluation, as a list of dicts.

    A feature network embeds samples for FD/KID/precision/recall (``genzoo eval --feature
    NAME``, or a family's ``eval_defaults["feature"]``); it is not a generative architecture
    and ``genzoo list`` does not show it. Core registers ``mnist`` (images) and ``logmel``
    (audio). Each dict has:

    - ``name`` (str): what ``--feature`` names, e.g. ``"mnist"``; letters, digits, ``.``,
      ``_``, ``-`` (``timm:NAME`` is built in).
    - ``target`` (str): ``"package.module:factory"``, imported only on use;
      ``factory(device=...)`` returns a ``genzoo.eval.features.FeatureNet``: ``net(batch)``
      gives ``(features (N, D), class probabilities (N, K) or None)`` for a batch in the
      modality's layout (images (N, C, H, W) in [0, 1], audio (N, channels, T) in [-1, 1]);
      a net whose ``__call__`` takes a ``meta`` keyword is called ``net(batch, meta=...)``
      with the metadata the modality names (``{"sample_rate": 16000}``). ``net.key`` names
      the exact weights (reference statistics are cached per key).
    - ``summary`` (str, optional): one line for ``genzoo plugins``.
    - ``input_shape`` (list of int or None): the one sample shape it takes, e.g.
      ``[1, 28, 28]``; None when it takes any (resizing images itself, any audio length).
    """


@hookspec
def genzoo_detect_arch(config: dict[str, Any], filenames: list[str]) -> str | None:
    """Name the architecture of a model folder that has no ``genzoo`` section in config.json.

    Called for folders or Hub repos in another ecosystem's layout (a diffusers UNet, a
    transformers causal LM). ``config`` is the parsed config.json (empty when absent) and
    ``filenames`` the files present. Return an architecture name this plugin registered, or
    None when the layout is not yours. The manager asks one plugin at a time in precedence
    order and takes the first answer that is not None (an unregistered name is that plugin's
    error and the next is asked).
    """


@hookspec
def genzoo_select_files(filenames: list[str], read_json: Callable[[str], Any],
                        dtype: str | None) -> list[str] | None:
    """Choose the files of a Hub repository that a model of yours needs (None: not yours).

    Called when ``genzoo.load``, ``genzoo sample`` or ``genzoo download`` is given an
    ``hf://org/repo[@revision]`` that no card describes, before anything but the listing is
    downloaded. ``filenames`` are the repository's files at the commit the revision resolves
    to (relative paths, ``/``-separated, sorted). ``read_json(name)`` returns the parsed
    content of one of them (downloaded at that commit, at most 16 MiB), for a layout whose
    index file says what it needs (a diffusers ``model_index.json``). ``dtype`` is the dtype
    asked for (``"fp32"``, ``"bf16"``, ``"fp16"``), or None when none was (``auto``); for
    ``"fp16"``/``"bf16"`` a plugin may choose a half-precision variant of the weights.

    Return the names to download, each one of ``filenames``; genzoo fetches exactly those,
    verifies each against the Hub's listing and records its sha256 (the repository stays
    pinned to that commit). Pickle files (``*.bin``, ``*.ckpt``, ``*.pt`` ...) are refused
    whoever chooses them. Return None when the layout is not yours: when no plugin answers,
    genzoo fetches what ``genzoo.catalog.hub.DEFAULT_PATTERNS`` match. The manager asks one
    plugin at a time in precedence order and takes the first answer that is not None; an
    answer naming a file not in ``filenames``, an empty list, or an exception is recorded
    against that plugin and the next is asked — except a ``genzoo.errors.GenzooError``
    (e.g. ``WeightsError``), which is how a plugin refuses a repository that is its own but
    cannot be loaded: the user sees its one line.
    """


@hookspec
def genzoo_modalities() -> list[dict[str, Any]]:
    """Return the modalities (kinds of sample) this plugin provides, as a list of dicts.

    A modality says how a kind of output is held, checked, written, served, shown in the
    gallery and tagged on a model card (``genzoo.samples.Modality``); a model names the one it
    makes in ``GenerativeModel.modality``. genzoo registers ``image``, ``text`` and ``audio``
    itself, through this hook, like any plugin. Each dict has:

    - ``name`` (str): what models declare, e.g. ``"audio"``; letters, digits, ``.``, ``_``,
      ``-``; unique across plugins (precedence decides duplicates).
    - ``target`` (str): ``"package.module:ClassName"`` of a ``genzoo.samples.Modality``
      subclass whose ``name`` is this name; imported on first use (samples of it are made).
    - ``summary`` (str, optional): one line for ``genzoo plugins``.
    """
