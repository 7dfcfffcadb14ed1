"""The on-disk format's reading and writing helpers: config.json (the one reader), safetensors
weights (never pickle), tied tensors, and building a model without random initialisation before
its weights are read. ``genzoo.model`` re-exports the public ones.

Importing this module does not import torch (the functions that need it import it), so the
catalog and the API read config.json with the same ``read_config`` as ``from_pretrained``.
The file names live in ``genzoo.names``."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from genzoo.errors import WeightsError
from genzoo.names import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    import torch
    from torch import nn

    from genzoo.model import GenerativeModel

__all__ = ["CARD_NAME", "CONFIG_NAME", "WEIGHTS_NAME", "read_config", "read_safetensors",
           "save_safetensors", "skip_init", "model_card_markdown"]


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "orthogonal_")


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Make ``torch.nn.init`` functions no-ops while a model is built only to be overwritten by
    its saved weights: random initialisation is most of the construction time of a small model.
    ``load_weights`` refuses a file that lacks any parameter, so nothing stays uninitialised."""
    from torch import nn
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(nn.init, name, _keep)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def read_json(path: str | Path, required: bool = True) -> dict[str, Any]:
    """A JSON object from ``path`` (a config.json, a scheduler or pipeline index): a one-line
    ``WeightsError`` naming the file when it is not valid JSON or not an object, or when it is
    absent and ``required`` (else ``{}``)."""
    path = Path(path)
    if not path.is_file():
        if not required:
            return {}
        raise WeightsError(f"{path}: missing; re-download the model")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: not valid JSON ({_first_line(e)}); re-download or re-save "
                           "the model") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


def safetensors_weights(folder: str | Path, name: str,
                        variants: tuple[str, ...] = ()) -> str | None:
    """Check that ``folder`` holds the safetensors weights ``name`` (one file, or shards with
    ``name.index.json``): None when it does, else the first of ``variants`` present
    (``name`` with ``.fp16`` before its suffix, as diffusers names variants). Without them,
    one ``WeightsError`` line: pickle ``.bin`` weights alone are named as never loaded."""
    folder = Path(folder)
    if (folder / name).is_file() or (folder / (name + ".index.json")).is_file():
        return None
    stem = name.removesuffix(".safetensors")
    for variant in variants:
        if (folder / f"{stem}.{variant}.safetensors").is_file() or \
                (folder / f"{stem}.safetensors.index.{variant}.json").is_file():
            return variant
    pickle = folder.is_dir() and any(folder.glob("*.bin"))
    raise WeightsError(f"{folder}: no {name}" + (
        " (only pickle .bin weights, which genzoo never loads; convert them to safetensors)"
        if pickle else "; re-download the model"))


def read_config(folder: str | Path, required: bool = True) -> dict[str, Any]:
    """The config.json of ``folder`` as a dict (``read_json``'s checks); absent and
    ``required``, the one-line error says what a genzoo folder holds (not required: ``{}``, a
    foreign layout may keep its config elsewhere)."""
    path = Path(folder) / CONFIG_NAME
    if required and not path.is_file():
        raise WeightsError(f"{folder}: no {CONFIG_NAME}; a genzoo model folder holds "
                           f"{CONFIG_NAME}, {WEIGHTS_NAME} and {CARD_NAME}")
    return read_json(path, required=False)


#: The OS error number safetensors' Rust side reports inside its message ("Os { code: 28 ...").
_OS_CODE = re.compile(r"Os \{ code: (\d+)")


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, with a failed write (a full disk, a read-only folder)
    raised as the ``OSError`` it is: safetensors wraps it in its own error type, which the
    callers that turn ``OSError`` into one line (``genzoo finetune``'s output errors) would
    otherwise miss, printing a traceback instead."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        found = _OS_CODE.search(str(e))
        if found is None and "StorageFull" not in str(e):
            raise
        code = int(found.group(1)) if found else errno.ENOSPC
        raise OSError(code, os.strerror(code), str(path)) from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file to CPU tensors; refuse anything else with a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        hint = " (pickle weights such as .bin/.pt are never loaded)" if any(
            path.with_name(n).exists() for n in ("pytorch_model.bin", "model.pt")) else ""
        raise WeightsError(f"{path}: weights file missing{hint}; re-download or re-save the model")
    try:
        state: dict[str, torch.Tensor] = load_file(str(path))
        return state
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0]}); "
                           "delete it and download the model again") from e


def model_card_markdown(model: GenerativeModel, card: dict[str, Any]) -> str:
    """README.md for ``model``: huggingface_hub card data (``library_name: genzoo``, license,
    base_model, datasets, measured figures as ``model-index``) and a short description."""
    from genzoo.modelcard import render
    return render(model, card)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage: store tied tensors once (the first name wins)."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = k
        out[k] = v
    return out


def _is_tied(model: nn.Module, key: str, state: dict[str, torch.Tensor]) -> bool:
    """True when ``key`` shares storage with a tensor present in ``state`` (weight tying)."""
    own = model.state_dict()
    ptr = own[key].untyped_storage().data_ptr()
    return any(own[k].untyped_storage().data_ptr() == ptr for k in state if k in own and k != key)
