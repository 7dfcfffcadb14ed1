"""Which files of a diffusers pipeline repository a model needs (torch-free: the plugin's
``genzoo_select_files`` hook calls this before anything but the repository's listing is
downloaded).

A pipeline repository on the Hub holds much more than one pipeline: single-file checkpoints at
its root (``v1-5-pruned.safetensors``, 4-7 GB), half-precision and EMA-free variants beside each
component's weights (``unet/diffusion_pytorch_model.fp16.safetensors``), pickle ``.bin`` and
``.ckpt`` files, Flax, ONNX and OpenVINO exports, folders no pipeline names (SDXL's
``vae_1_0/``). A pipeline needs ``model_index.json`` and, for each component it lists (a null
entry, such as a removed safety checker, lists none; the safety checker, feature extractor
and image encoder, which genzoo never reads, are skipped): the component's configuration and
tokenizer files directly in its folder (``*.json``, ``*.txt``, ``*.model``) and ONE safetensors
weight set — a single file, or shards with their index, as diffusers and transformers look for
them — the set without a variant, unless ``fp16``/``bf16`` is asked for and the component has
such a variant (``bf16``: a ``bf16`` variant, else ``fp16``). A component whose weights are
only pickle (or other formats) is refused in one line naming it: genzoo never loads pickle.

A repository whose ``model_index.json`` names components but keeps their files at its root (the
flat layout of the early ``google/ddpm-*`` repositories) is left to genzoo's default patterns.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from genzoo.errors import WeightsError

__all__ = ["MODEL_INDEX", "select_files", "pipeline_components", "component_variant"]

MODEL_INDEX = "model_index.json"
#: Components genzoo's pipelines never read (SD 1.x's 1.2 GB safety checker, its image
#: processor, IP-adapter image encoders): not downloaded.
UNUSED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")
#: A component's files besides its weights: configs, tokenizer vocabularies, merges and
#: sentencepiece models.
_CONFIG_SUFFIXES = (".json", ".txt", ".model")
#: Files that hold weights, in a format genzoo loads or not.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle",
                    ".msgpack", ".onnx", ".onnx_data", ".h5", ".pb", ".gguf")
#: The variants each dtype takes, best first; None is the set without a variant.
_PREFERRED: dict[str | None, tuple[str | None, ...]] = {
    "fp16": ("fp16", None), "bf16": ("bf16", "fp16", None)}
#: The weight files diffusers and transformers look for, in this order when a component holds
#: several.
_STEMS = ("diffusion_pytorch_model", "model")
_WEIGHTS_RE = re.compile(r"^(?P<stem>[^.]+?)(?:\.(?P<variant>\w+))?(?:-(?P<shard>\d+-of-\d+))?"
                         r"\.safetensors$")
_INDEX_RE = re.compile(r"^(?P<stem>[^.]+)\.safetensors\.index(?:\.(?P<variant>\w+))?\.json$")


def select_files(filenames: Iterable[str], read_json: Callable[[str], Any],
                 dtype: str | None) -> list[str] | None:
    """The files of a diffusers pipeline repository that a pipeline loaded for ``dtype`` needs
    (see the module docstring), sorted; None when ``filenames`` are no pipeline's in folders
    (no ``model_index.json`` at the root, or none of its components has a folder).

    ``read_json`` reads ``model_index.json``. A listed component without files, or whose
    weights are only pickle, other formats or variants that ``dtype`` does not take, is one
    ``WeightsError`` naming it."""
    names = sorted({str(f).replace("\\", "/") for f in filenames})
    if MODEL_INDEX not in names:
        return None
    components = [c for c in pipeline_components(read_json(MODEL_INDEX))
                  if c not in UNUSED_COMPONENTS]
    folders = _by_folder(names)
    if not any(c in folders for c in components):
        return None
    chosen = [MODEL_INDEX]
    for component in components:
        if component not in folders:
            raise WeightsError(f"{MODEL_INDEX} lists component {component!r}, which has no "
                               "files in the repository")
        chosen += [f"{component}/{f}" for f in _component_files(component, folders[component],
                                                                dtype)]
    return sorted(chosen)


def pipeline_components(index: Any) -> list[str]:
    """The components a parsed ``model_index.json`` lists (``"unet": ["diffusers",
    "UNet2DConditionModel"]``), sorted; null entries and ``_``-prefixed keys are left out."""
    if not isinstance(index, dict):
        raise WeightsError(f"{MODEL_INDEX} is not a JSON object")
    return sorted(k for k, v in index.items()
                  if isinstance(k, str) and not k.startswith("_") and "/" not in k
                  and isinstance(v, (list, tuple)) and len(v) == 2 and all(v))


def component_variant(filenames: Iterable[str], component: str,
                      dtype: str | None) -> str | None:
    """The variant (``"fp16"``...) of the weight set ``select_files`` takes for ``component``
    among ``filenames`` (a folder's or a repository's), None for the set without a variant:
    what a loader passes to ``from_pretrained(variant=...)``."""
    names = sorted({str(f).replace("\\", "/") for f in filenames})
    weights = [f for f in _component_files(component, _by_folder(names).get(component, []),
                                           dtype) if f.endswith(".safetensors")]
    match = _WEIGHTS_RE.match(weights[0]) if weights else None
    return match.group("variant") if match else None


def _by_folder(names: list[str]) -> dict[str, list[str]]:
    """``{folder: [file names directly in it]}`` for the top-level folders of ``names``."""
    folders: dict[str, list[str]] = {}
    for name in names:
        folder, sep, rest = name.partition("/")
        if sep and rest and "/" not in rest:
            folders.setdefault(folder, []).append(rest)
    return folders


def _component_files(component: str, files: list[str], dtype: str | None) -> list[str]:
    """A component's configuration files and its one weight set for ``dtype`` (names relative
    to its folder)."""
    configs = [f for f in files if f.endswith(_CONFIG_SUFFIXES) and ".index." not in f]
    sets = _weight_sets(files)
    if not sets:
        other = [f for f in files if f.lower().endswith(_WEIGHT_SUFFIXES)]
        if other:
            raise WeightsError(
                f"{MODEL_INDEX} lists component {component!r}, whose weights are "
                f"{_shown(component, other)}, not safetensors; genzoo never loads pickle "
                "(nor Flax/ONNX exports): the repository needs safetensors weights for it")
        return configs  # a scheduler, a tokenizer, a feature extractor
    for variant in _PREFERRED.get(dtype, (None,)):
        stems = [stem for stem, v in sets if v == variant]
        if stems:
            stem = min(stems, key=lambda s: (_STEMS.index(s) if s in _STEMS else len(_STEMS), s))
            return sorted(configs + sets[(stem, variant)])
    variants = sorted({v for _, v in sets if v})
    usable = [v for v in variants if v in _PREFERRED]
    raise WeightsError(f"{MODEL_INDEX} lists component {component!r}, whose only safetensors "
                       f"weights are the {', '.join(variants)} variant(s)"
                       + (f"; ask for them with --dtype {usable[0]}" if usable else
                          ", which genzoo does not choose"))


def _weight_sets(files: list[str]) -> dict[tuple[str, str | None], list[str]]:
    """``{(stem, variant): files}``: each single safetensors file, and each sharded set with
    its index (which diffusers prefers when both are there; shards without one are no set)."""
    singles: dict[tuple[str, str | None], list[str]] = {}
    shards: dict[tuple[str, str | None], list[str]] = {}
    indexes: dict[tuple[str, str | None], str] = {}
    for name in files:
        index = _INDEX_RE.match(name)
        weights = _WEIGHTS_RE.match(name)
        if index:
            indexes[(index.group("stem"), index.group("variant"))] = name
        elif weights:
            key = (weights.group("stem"), weights.group("variant"))
            (shards if weights.group("shard") else singles).setdefault(key, []).append(name)
    sets = {key: [index, *sorted(shards[key])] for key, index in indexes.items()
            if shards.get(key)}
    for key, single in singles.items():
        sets.setdefault(key, single[:1])
    return sets


def _shown(component: str, files: list[str]) -> str:
    """``unet/a.bin, unet/b.bin`` (at most three, then "...")."""
    return ", ".join(f"{component}/{f}" for f in files[:3]) + (" ..." if len(files) > 3 else "")
