"""The uniform API: ``load``, ``list_models``, ``model_info``, ``download``, ``evaluate``,
``plugin_infos``.

``load`` joins the other parts and holds no logic of its own: registry (card) -> plugins
(arch -> class) -> hub (verified local folder) -> ``cls.from_pretrained``. An ``hf://``
repository without a card downloads only the files the plugins choose for it
(``file_selector``: their ``genzoo_select_files`` hook, asked by ``genzoo.catalog.hub_files``),
pinned to a commit and verified. Importing this module does not import torch; loading a model
does.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from genzoo.catalog import hub as hub
from genzoo.catalog import hub_files as hub_files
from genzoo.catalog.hub import NOT_BUILT as NOT_BUILT  # re-exported: its old home
from genzoo.catalog.registry import ModelCard, get_registry, shown
from genzoo.devices import check_dtype
from genzoo.errors import RegistryError, UnknownModelError, WeightsError
from genzoo.modelio import read_config
from genzoo.names import ADAPTER_CONFIG  # a folder holding it is a LoRA adapter
from genzoo.plugins import manager as plugins
from genzoo.plugins.manager import PluginInfo

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch-free at import: the name is for annotations only
    from genzoo.model import GenerativeModel



def load(name_or_path: str | os.PathLike[str], device: str = "auto", dtype: str = "auto",
         revision: str | None = None) -> GenerativeModel:
    """Load a model by card name, local folder or ``hf://org/repo[@revision]``.

    ``device="auto"`` picks CUDA, then MPS, then CPU; ``dtype="auto"`` bf16 autocast where
    CUDA supports it, else fp32. Returns a ``genzoo.GenerativeModel``."""
    target = os.fspath(name_or_path)
    registry = get_registry()
    if target in registry:
        card = registry.get(target)
        cls = plugins.load_arch_class(card.arch, card.package)  # before any download
        if hub.not_built(card.source, card.files):
            raise WeightsError(f"{card.name}: {NOT_BUILT} ({card.source} is empty); "
                               "the model cannot be loaded until its weights are published")
        folder = hub.fetch(card.source, card.files, revision, name=card.name)
        _check_arch(folder, card.arch)
        model = cls.from_pretrained(folder, device=device, dtype=dtype)
        model.name_or_path = card.name
        model.origin = {"license": card.license, "tags": list(card.tags),
                        "pipeline_tag": card.pipeline_tag,  # the plugin's own card wins
                        "base_model": hub.hub_repo_id(card.source) or card.name}
        model.apply_card_sampling(card.sampling)
        model.card_files = dict(card.files or {})  # verified digests an adapter records
    elif target.startswith(hub.HF_PREFIX) or _is_dir(target):
        pinned = hub_files.fetch_selected(target, file_selector(dtype), revision) \
            if target.startswith(hub.HF_PREFIX) else None
        folder = pinned.folder if pinned is not None else Path(target)
        if (folder / ADAPTER_CONFIG).is_file():  # a LoRA adapter: its base, verified, + it
            from genzoo.engine.lora import load_adapter
            return load_adapter(folder, load, device=device, dtype=dtype,
                                revision=hub.resolved_revision(folder) or revision)
        cls = plugins.load_arch_class(detect_folder_arch(folder))
        model = cls.from_pretrained(folder, device=device, dtype=dtype)
        model.name_or_path = target
        if pinned is not None:
            model.origin = {"folder": str(folder),
                            "base_model": hub.hub_repo_id(target)}
            model.card_files = dict(pinned.files)  # each file's sha256, verified at fetch
    else:
        raise _not_a_model(target)
    model.revision = hub.resolved_revision(folder) or revision
    model.loaded_from = folder  # what an adapter trained on it names and hashes
    return model


def file_selector(dtype: str | None = None) -> hub_files.Selector:
    """What an ``hf://`` repository without a card downloads: the files the plugins'
    ``genzoo_select_files`` choose for ``dtype`` (``auto``/None: none asked), else the hub's
    default patterns. Checks ``dtype`` before anything is downloaded."""
    asked = check_dtype(dtype)
    wanted = None if asked == "auto" else asked

    def select(filenames: list[str], read_json: Callable[[str], Any]) -> list[str] | None:
        return plugins.select_files(filenames, read_json, wanted)
    return select


def _is_dir(target: str) -> bool:
    """``Path.is_dir`` that says False for names no file system takes (too long, NUL bytes)
    instead of raising."""
    try:
        return Path(target).is_dir()
    except (OSError, ValueError):
        return False


def _not_a_model(target: str) -> UnknownModelError:
    """The one-line error for a target that is no card, folder or Hub id: the plugin filter
    that hides its card when there is one, else close names (not for what looks like a
    path)."""
    registry = get_registry()
    hidden = registry.filtered_out(target)
    if hidden:
        return UnknownModelError(hidden)
    hint = "" if os.sep in target or "/" in target else registry.suggest(target)
    return UnknownModelError(f"{shown(target)} is not a model name, a folder or an "
                             f"hf://org/repo id{hint}")


#: How far ``detect_folder_arch`` looks into a folder without a genzoo config.json: enough for
#: a diffusers or transformers layout, never a walk of a whole file system (``genzoo sample /``).
_LISTING_DEPTH, _LISTING_MAX = 2, 1000


def _folder_files(folder: Path) -> list[str]:
    """Relative paths of the files in ``folder`` down to ``_LISTING_DEPTH`` levels, at most
    ``_LISTING_MAX`` of them, unreadable entries skipped."""
    found: list[str] = []
    pending = [(folder, 1)]
    while pending and len(found) < _LISTING_MAX:
        current, depth = pending.pop(0)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_file():
                    found.append(os.path.relpath(entry.path, folder))
                elif entry.is_dir(follow_symlinks=False) and depth < _LISTING_DEPTH:
                    pending.append((Path(entry.path), depth + 1))
            except OSError:
                continue
            if len(found) >= _LISTING_MAX:
                break
    return sorted(found)


def _check_arch(folder: Path, arch: str) -> None:
    """A folder that names its arch must name the card's (a swapped folder is refused)."""
    section = read_config(folder, required=False).get("genzoo")
    if isinstance(section, dict) and section.get("arch") not in (None, arch):
        raise WeightsError(f"{folder}: config.json is for arch {section.get('arch')!r}, the card "
                           f"expects {arch!r}")


def detect_folder_arch(folder: Path) -> str:
    """The arch of a folder: config.json's ``genzoo.arch``, else what a plugin recognises."""
    folder = Path(folder)
    config = read_config(folder, required=False)
    section = config.get("genzoo")
    if isinstance(section, dict) and isinstance(section.get("arch"), str):
        return str(section["arch"])
    files = _folder_files(folder)
    arch = plugins.detect_arch(config, files)
    if arch is None:
        shown = ", ".join(files[:6]) + (" ..." if len(files) > 6 else "") or "no files"
        raise WeightsError(f"{folder}: not a model genzoo can load (found {shown}); expected "
                           "config.json with a 'genzoo' section and model.safetensors, or a "
                           "diffusers/transformers layout that an installed plugin recognises")
    return arch


def list_models(pattern: str | None = None, family: str | None = None,
                can: str | None = None) -> list[ModelCard]:
    """Cards matching ``pattern`` (fnmatch wildcards; a plain word matches a substring),
    ``family`` and capability ``can`` (label, init, mask, interpolate ...), sorted by name."""
    return get_registry().list(pattern, family, can)


def model_status(card: ModelCard) -> dict[str, Any]:
    """Whether the card's plugin is installed and its weights are local, with a status line."""
    archs = plugins.architectures()
    installed = card.arch in archs
    src = hub.parse_source(card.source)
    folder = hub.local_folder(card.source, card.files)
    problems = []
    left_out = plugins.get_manager().left_out_owner(card.arch) if not installed else None
    if left_out:
        problems.append(f"plugin {left_out} left out by {plugins.get_manager().allow_text}")
    elif not installed:
        problems.append(f"plugin missing: pip install {card.package}")
    if hub.not_built(card.source, card.files):
        problems.append(NOT_BUILT)
    if folder is not None and src.kind == "pkg" and card.files and installed:
        damaged = _bundled_damage(card, folder)
        if damaged:
            problems.append(damaged)
    if problems:
        status = "; ".join(problems)
    elif folder is not None:
        status = "ready" if src.kind == "hf" or card.files else "ready (no digests)"
    else:
        status = "not downloaded"
    arch_plugin = archs[card.arch].plugin if installed else None
    # "plugin": the plugin that shipped the card, else the one whose architecture loads it.
    return {"plugin_installed": installed, "plugin": card.plugin or arch_plugin,
            "arch_plugin": arch_plugin,
            "install": None if installed else f"pip install {card.package}",
            "downloaded": folder is not None, "bundled": src.kind == "pkg",
            "path": str(folder) if folder is not None else None, "status": status}


def _bundled_damage(card: ModelCard, folder: Path) -> str | None:
    """Why a card's bundled (``pkg://``) files cannot be used, or None when they verify.

    Bundled weights are loaded from the installed package itself, so a changed file would be
    refused at load: ``genzoo list`` must say so rather than "ready". Through the verified-file
    cache an unchanged file costs one stat, not a re-hash."""
    from genzoo.errors import GenzooError
    from genzoo.catalog.integrity import verify_folder
    try:
        verify_folder(folder, card.files, source=card.name)
    except GenzooError:
        return f"damaged bundled weights: pip install --force-reinstall {card.package}"
    return None


def model_info(name: str | os.PathLike[str], options: bool = True) -> dict[str, Any]:
    """What ``genzoo info`` shows (the info dict): the catalog card of ``name`` as a dict,
    plus plugin/download status (see ``model_status``) and, with ``options``, the sampling
    options schema (this imports the architecture's class).

    ``name`` may also be a local model folder: its config.json's arch, family and options."""
    target = os.fspath(name)
    registry = get_registry()
    if target not in registry and _is_dir(target):
        return _folder_info(Path(target), options)
    card = registry.get(target)
    info = {**card.to_dict(), **model_status(card)}
    if options and info["plugin_installed"]:
        cls = plugins.load_arch_class(card.arch, card.package)
        folder = Path(info["path"]) if info["downloaded"] and info["status"].startswith("ready") \
            else None
        info["options"] = option_schema(cls, card.sampling, folder)
        info["modality"] = cls.modality
    return info


def data_help(name: str | os.PathLike[str]) -> str | None:
    """What ``finetune --data`` takes for the model ``name`` (a card name or a model folder):
    its family's ``data_help`` class attribute (e.g. "a folder of WAV files or an .npz of
    (n, channels, T) waveforms"), or None when it declares none or ``name`` cannot be
    resolved without loading weights (then ``genzoo.engine.options.DATA_HELP`` applies)."""
    from genzoo.errors import GenzooError
    target = os.fspath(name)
    try:
        registry = get_registry()
        if target in registry:
            card = registry.get(target)
            cls = plugins.load_arch_class(card.arch, card.package)
        elif _is_dir(target) and not (Path(target) / ADAPTER_CONFIG).is_file():
            cls = plugins.load_arch_class(detect_folder_arch(Path(target)))
        else:
            return None
    except GenzooError:
        return None
    text = getattr(cls, "data_help", None)
    return str(text) if text else None


def option_schema(cls: type[GenerativeModel], sampling: dict[str, Any] | None = None,
                  folder: Path | None = None) -> list[dict[str, Any]]:
    """The sampling options as dicts (a card's ``sampling`` entries become the defaults);
    API-only (callable) options are left out. With the model's ``folder`` they are the loaded
    model's own (what a class declares can depend on the config: class labels only for a
    network that takes them); without one, or if it does not load, the class's."""
    from genzoo.options import build_schema
    if folder is not None:
        try:
            model = cls.from_pretrained(folder, device="cpu", dtype="fp32")
            model.apply_card_sampling(sampling or {})
            return [o.to_dict() for o in model.options().values() if o.type != "callable"]
        except Exception as e:  # noqa: BLE001 - `info` still answers; load says what is wrong
            logger.debug("options of %s from its class: %s", folder, e)
    schema = build_schema(cls.sample_options, {**cls.sample_defaults, **(sampling or {})})
    return [o.to_dict() for o in schema.values() if o.type != "callable"]


def _folder_info(folder: Path, options: bool) -> dict[str, Any]:
    """``model_info`` of a local folder: what its config.json says and the arch's options
    (a LoRA adapter folder: its card's base and peft's config, torch-free)."""
    if (folder / ADAPTER_CONFIG).is_file():
        from genzoo.engine.lora import adapter_info
        return adapter_info(folder)
    arch = detect_folder_arch(folder)
    archs = plugins.architectures()
    info: dict[str, Any] = {"name": str(folder), "path": str(folder.resolve()), "arch": arch,
                            "family": archs[arch].family if arch in archs else None,
                            "plugin": archs[arch].plugin if arch in archs else None,
                            "files": sorted(p.name for p in folder.iterdir() if p.is_file()),
                            "status": "local folder"}
    if options:
        cls = plugins.load_arch_class(arch)
        info["options"] = option_schema(cls, None, folder)
        info["modality"] = cls.modality
    return info


def download(name: str, revision: str | None = None, dtype: str | None = None) -> Path:
    """Fetch a card's weights into the cache (or verify bundled ones); returns the folder.

    ``name`` may also be an ``hf://org/repo[@revision]`` without a card: the files its
    plugin chooses for ``dtype`` are fetched, pinned and verified, as ``load`` would."""
    registry = get_registry()
    if name not in registry and name.startswith(hub.HF_PREFIX):
        return hub_files.fetch_selected(name, file_selector(dtype), revision, name=name).folder
    card = registry.get(name)
    if hub.not_built(card.source, card.files):
        raise WeightsError(f"{card.name}: {NOT_BUILT}; nothing to download")
    return hub.fetch(card.source, card.files, revision, name=card.name)


def evaluate(model: GenerativeModel | str | os.PathLike[str], n: int | None = None,
             **kwargs: Any) -> dict[str, Any]:
    """``genzoo.evaluate``: measure ``model`` (a loaded model, a card name, a folder or an
    ``hf://`` id, loaded here) on ``n`` samples; the keywords are those of
    ``genzoo.eval.metrics.evaluate`` (data, feature, seed, batch_size, progress, labels and
    sampling options). Returns a flat dict of metrics.

    Inside an initialised process group (``torchrun``) every rank calls it alike: each
    samples and measures its share of the batches, and every rank returns the figures one
    process would (see docs/distributed.md)."""
    from genzoo.eval.metrics import evaluate as measure
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    return measure(model, n=n, **kwargs)


def plugin_infos() -> list[PluginInfo]:
    """What ``genzoo plugins`` shows: every plugin entry point with its status, errors and
    what it provides. The catalog is built first, so each plugin's cards and the card errors
    or conflicts recorded against it are there."""
    try:
        get_registry()
    except RegistryError:
        pass  # a malformed genzoo or user catalog is no plugin's fault; `genzoo list` names it
    return plugins.plugins()
