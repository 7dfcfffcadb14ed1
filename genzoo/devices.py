"""Devices and dtypes: the one vocabulary every command and the engine use.

A dtype is named ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``float32``, ``bfloat16`` and
``float16`` are accepted as aliases). ``check_dtype`` validates a name without torch, so the
CLI can refuse a bad ``--dtype`` before the heavy imports; ``resolve_dtype`` and
``resolve_device`` turn names into torch objects. This module sits below ``genzoo.model`` and
``genzoo.engine.train`` so that neither has to import the other for them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager

from genzoo.errors import OptionError

if TYPE_CHECKING:  # torch is imported inside the functions: importing this module stays light
    import torch

#: The canonical dtype names, in the order help texts list them.
DTYPES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: Accepted spellings -> canonical name.
DTYPE_ALIASES: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

#: Help text for a ``--dtype`` flag.
DTYPE_HELP = "auto, fp32, bf16 or fp16 (auto: bf16 autocast on a CUDA GPU that supports it)."


def check_dtype(name: str | None) -> str:
    """The canonical name of dtype ``name`` (``None`` -> ``auto``); a one-line OptionError
    naming the accepted values when it is not one of them."""
    if name is None:
        return "auto"
    key = str(name).strip().lower()
    key = DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise OptionError(f"unknown dtype {name!r}: use {', '.join(DTYPES[:-1])} or {DTYPES[-1]}")
    return key


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise OptionError(f"unknown device {device!r}: use auto, cpu, cuda or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device 'cuda' asked for but no CUDA GPU is available: use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device``: ``auto`` -> bf16 on a CUDA GPU that supports it,
    else None (plain fp32); ``fp32`` -> None; ``bf16``/``fp16`` -> that torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return None if dtype == torch.float32 else dtype
    name = check_dtype(dtype)
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> ContextManager[Any]:
    """The autocast context sampling and training run under: ``dtype`` on ``device``'s type,
    or autocast turned off for None (plain fp32, even inside a caller's autocast)."""
    import torch

    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    if dtype is None:
        return torch.autocast(kind, enabled=False)
    return torch.autocast(kind, dtype=dtype)


__all__ = ["DTYPES", "DTYPE_ALIASES", "DTYPE_HELP", "autocast", "check_dtype", "resolve_device",
           "resolve_dtype"]


def describe_machine(device: object = "cpu") -> str:
    """Where a figure was measured: the GPU's name on CUDA, else the CPU model (as lscpu
    names it) and its core count."""
    import os
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(str(device)))
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), "")
    except OSError:
        pass
    if not name:
        import platform
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"
