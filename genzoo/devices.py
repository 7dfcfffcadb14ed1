"""Devices, dtypes and process groups: the one vocabulary every command and the engine use.

A dtype is named ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``float32``, ``bfloat16`` and
``float16`` are accepted as aliases). ``check_dtype`` validates a name without torch, so the
CLI can refuse a bad ``--dtype`` before the heavy imports; ``resolve_dtype`` and
``resolve_device`` turn names into torch objects. This module sits below ``genzoo.model`` and
``genzoo.engine.train`` so that neither has to import the other for them.

Under torchrun, ``init_distributed`` joins the process group and the byte exchanges below move
samples and features between ranks: raw bytes in uint8 tensors (safetensors inside, never
pickle) over a gloo group, so CPU tensors travel even when the default group is NCCL.
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
            # under torchrun each rank has its own GPU: LOCAL_RANK's (set by init_distributed)
            _, world = distributed_world()
            return torch.device("cuda", _local_rank()) if world > 1 else torch.device("cuda")
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


__all__ = ["DTYPES", "DTYPE_ALIASES", "DTYPE_HELP", "all_gather_bytes", "autocast", "barrier",
           "check_dtype", "describe_machine", "distributed_world", "gather_bytes", "gather_ints",
           "init_distributed", "leave_distributed", "resolve_device", "resolve_dtype"]


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


# ---- process groups (torchrun) -----------------------------------------------------------
#: The gloo group bytes travel in, per default group: [(default group, gloo group or None)].
_EXCHANGE: list[tuple[Any, Any]] = []


def _local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK; 0 outside torchrun)."""
    import os
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def init_distributed() -> tuple[int, int]:
    """Under torchrun (``WORLD_SIZE`` > 1 in the environment) join the default process group
    once — NCCL when CUDA is available, else gloo — make ``cuda:LOCAL_RANK`` this rank's
    CUDA device, and return ``(rank, world)``; outside torchrun ``(0, 1)``. A group the
    caller initialised already is used as it is."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return distributed_world()
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        torch.cuda.set_device(_local_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # a group left for the interpreter's finalisation can abort the process (gloo's
        # threads still holding tensors: "terminate called without an active exception",
        # pytorch/pytorch#190489): the group genzoo started, genzoo ends while Python lives
        import atexit
        atexit.register(leave_distributed)
    return dist.get_rank(), dist.get_world_size()


def leave_distributed() -> None:
    """Destroy the process groups (the default one and genzoo's exchange group), if any:
    what ``init_distributed`` registers to run at exit."""
    import torch.distributed as dist
    _EXCHANGE.clear()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def distributed_world() -> tuple[int, int]:
    """``(rank, world)`` of the initialised default process group, else ``(0, 1)``."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _exchange_group() -> Any:
    """The group bytes travel in: the default group when its backend is gloo (None), else a
    gloo group over the same ranks, created once per default group (``new_group`` is
    collective: every rank reaches this at the same exchange)."""
    import torch.distributed as dist
    world = dist.group.WORLD
    if _EXCHANGE and _EXCHANGE[0][0] is world:
        return _EXCHANGE[0][1]
    group = None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")
    _EXCHANGE[:] = [(world, group)]
    return group


def gather_ints(values: list[int]) -> list[list[int]]:
    """Every rank's ``values`` (the same count on every rank), in rank order, on every rank."""
    import torch
    import torch.distributed as dist
    mine = torch.tensor(values, dtype=torch.int64)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine, group=_exchange_group())
    return [[int(v) for v in t] for t in out]


def gather_bytes(payload: bytes, sizes: list[int], dst: int | None = None) -> list[bytes] | None:
    """Every rank's ``payload`` in rank order — on every rank (``dst`` None) or on rank
    ``dst`` alone (the others get None). ``sizes`` are every rank's payload lengths (from
    ``gather_ints``): the payloads travel padded to the longest in uint8 tensors."""
    import torch
    import torch.distributed as dist
    width = max(1, *sizes)  # gloo wants a non-empty tensor
    buf = torch.zeros(width, dtype=torch.uint8)
    if payload:
        buf[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    group = _exchange_group()
    rank = dist.get_rank()
    if dst is None:
        out = [torch.empty_like(buf) for _ in sizes]
        dist.all_gather(out, buf, group=group)
    else:
        out = [torch.empty_like(buf) for _ in sizes] if rank == dst else None
        dist.gather(buf, gather_list=out, dst=dst, group=group)
    if out is None:
        return None
    return [t[:size].numpy().tobytes() for t, size in zip(out, sizes)]


def all_gather_bytes(payload: bytes) -> list[bytes]:
    """Every rank's ``payload`` (any length), in rank order, on every rank."""
    sizes = [row[0] for row in gather_ints([len(payload)])]
    return gather_bytes(payload, sizes) or []


def barrier() -> None:
    """Wait for every rank (over the exchange group: no device tensor needed)."""
    import torch.distributed as dist
    dist.barrier(group=_exchange_group())
