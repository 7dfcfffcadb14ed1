"""The base of a LoRA adapter: which files identify it, and checking a loaded base against
the digests an adapter card recorded.

An adapter is only meaningful on the exact weights it was trained on, so its card records
the sha256 of each file that defines the base (weights, configs, tokenizer) and loading an
adapter refuses a base whose files differ, in one line, before anything is applied. This
module loads nothing itself (``genzoo.load`` hands ``genzoo.engine.lora`` its loader), so it sits
below the API in the import graph.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genzoo.errors import WeightsError
from genzoo.names import RUN_FILES

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel

#: What defines a model in its folder: weights, configs, tokenizer files. README.md is left
#: out (``genzoo eval --write-card`` rewrites it) and so are a finetune's run files.
_DEFINING = (".safetensors", ".json", ".txt", ".model")


def defining_files(folder: Path) -> list[str]:
    """The files of ``folder`` and of its subfolders (a diffusers layout's ``unet/``) whose
    bytes define the model, as sorted relative paths."""
    found = []
    for top in sorted(os.scandir(folder), key=lambda e: e.name):
        if top.name.startswith(".") or top.name in RUN_FILES:
            continue
        if top.is_file() and top.name.endswith(_DEFINING):
            found.append(top.name)
        elif top.is_dir(follow_symlinks=False):
            found += [f"{top.name}/{e.name}" for e in sorted(os.scandir(top.path),
                                                              key=lambda e: e.name)
                      if e.is_file() and not e.name.startswith(".")
                      and e.name.endswith(_DEFINING)]
    return found


def base_digests(model: GenerativeModel, folder: Path) -> dict[str, str]:
    """``{file: sha256}`` of the base ``model`` was loaded from (``folder``): a catalog card's
    own digests when ``genzoo.load`` recorded them (``model.card_files``, verified at load),
    else hashed here."""
    from genzoo.catalog.integrity import sha256_file
    known: dict[str, str | None] = dict(getattr(model, "card_files", None) or {})
    files = [f for f in known if f.endswith(_DEFINING)] or defining_files(folder)
    return {f: (known.get(f) or sha256_file(folder / f)).lower() for f in files}


def verify_base(model: GenerativeModel, base: dict[str, Any], adapter_folder: Path) -> None:
    """Check the files of a loaded base against the sha256 an adapter card gives; a card
    without digests, or a base whose files differ, is one ``WeightsError``."""
    name, expected = base["name"], base.get("sha256") or {}
    if not expected:
        raise WeightsError(f"{adapter_folder}: its card gives no sha256 of the base "
                           "(base_model_sha256); it cannot be verified, so it is not applied")
    found = base_digests(model, Path(getattr(model, "loaded_from", "") or name))
    for file, digest in sorted(expected.items()):
        if found.get(file) != str(digest).lower():
            got = found.get(file)
            shown = f"sha256 {got[:12]}..." if got else "no such file"
            raise WeightsError(f"{adapter_folder}: its base {name!r} differs from the one it was "
                               f"trained on ({file}: {shown}, the card expects "
                               f"{str(digest)[:12]}...); load it with the base it was trained on")
