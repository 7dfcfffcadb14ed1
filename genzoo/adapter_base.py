"""The base of a LoRA adapter: which files identify it, and finding it again, verified.

An adapter is only meaningful on the exact weights it was trained on, so its card records
the sha256 of each file that defines the base (weights, configs, tokenizer) and loading an
adapter refuses a base whose files differ, in one line, before anything is applied.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GenzooError, WeightsError

if TYPE_CHECKING:
    from .model import GenerativeModel

#: What defines a model in its folder: weights, configs, tokenizer files. README.md is left
#: out (``genzoo eval --write-card`` rewrites it) and so are a finetune's run files.
_DEFINING = (".safetensors", ".json", ".txt", ".model")
_RUN_FILES = {"checkpoints", "samples", "tensorboard"}


def defining_files(folder: Path) -> list[str]:
    """The files of ``folder`` (two levels deep, a diffusers layout's subfolders included)
    whose bytes define the model."""
    from .api import _folder_files
    found = []
    for rel in _folder_files(folder):
        parts = Path(rel).parts
        if parts[0] in _RUN_FILES or any(p.startswith(".") for p in parts):
            continue
        if rel.endswith(_DEFINING):
            found.append(rel)
    return found


def base_digests(model: GenerativeModel, folder: Path) -> dict[str, str]:
    """``{file: sha256}`` of the base ``model`` was loaded from (``folder``): a catalog card's
    own digests when it has them (already verified at load), else hashed here."""
    from .integrity import sha256_file
    from .registry import get_registry
    registry = get_registry()
    name = model.name_or_path or ""
    known: dict[str, str | None] = {}
    if name in registry:
        known = dict(registry.get(name).files or {})
    files = [f for f in known if f.endswith(_DEFINING)] or defining_files(folder)
    return {f: (known.get(f) or sha256_file(folder / f)).lower() for f in files}


def load_base(base: dict[str, Any], adapter_folder: Path, device: str = "auto",
              dtype: str = "auto") -> GenerativeModel:
    """Load the base an adapter card names and check its files' sha256 against the card's;
    a missing base or one whose files differ is one ``WeightsError``."""
    from .api import load
    name, revision, expected = base["name"], base.get("revision"), base.get("sha256") or {}
    if not expected:
        raise WeightsError(f"{adapter_folder}: its card gives no sha256 of the base "
                           "(base_model_sha256); it cannot be verified, so it is not applied")
    try:
        model = load(name, device=device, dtype=dtype, revision=revision)
    except GenzooError as e:
        raise WeightsError(f"{adapter_folder}: its base {name!r} cannot be loaded "
                           f"({str(e).splitlines()[0]})") from None
    found = base_digests(model, Path(getattr(model, "loaded_from", "") or name))
    for file, digest in sorted(expected.items()):
        if found.get(file) != str(digest).lower():
            got = found.get(file)
            shown = f"sha256 {got[:12]}..." if got else "no such file"
            raise WeightsError(f"{adapter_folder}: its base {name!r} differs from the one it was "
                               f"trained on ({file}: {shown}, the card expects "
                               f"{str(digest)[:12]}...); load it with the base it was trained on")
    return model
