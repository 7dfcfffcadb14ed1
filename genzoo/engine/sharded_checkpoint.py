"""Sharded training checkpoints for ``strategy="fsdp"``: ``torch.distributed.checkpoint`` (DCP)
with safetensors storage, JSON for the rest; never pickle.

``checkpoints/step-NNNNNNN/`` holds ``shards/`` (every rank writes its shard of the model,
optimizer and EMA tensors as safetensors files whose headers carry each shard's offsets:
``HuggingFaceStorageWriter(save_distributed=True)``; its reader rebuilds the global layout
from those headers, where DCP's default reader would unpickle a ``.metadata`` file),
``rng-RRRRR.safetensors`` (each rank's RNG state) and ``state.json`` (step, hyper-parameters,
the optimizers' non-tensor values, the world size). Loading reshards: a checkpoint written by
2 processes resumes in 1, or in 4. Ranks write into one temp folder that rank 0 renames into
place before it moves ``checkpoints/latest``, so a kill leaves the previous checkpoint in use.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genzoo.engine.checkpoint import KEEP, SHARDS_DIR
from genzoo.engine.parts import frozen_keys
from genzoo.errors import WeightsError
from genzoo.fsutil import atomic_write_text
from genzoo.modelio import save_safetensors
from genzoo.names import LATEST_NAME, STATE_JSON

FORMAT = "genzoo-dcp-1"


def _flat_state(runner: nn.Module, optimizers: dict, ema) -> dict[str, Any]:
    """The training state as one flat dict: ``model.*`` and ``ema.*`` tensors (sharded
    DTensors) and ``optim.<stage>.*`` (optimizer tensors and plain values, flattened by
    parameter name so that any world size maps them back)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_model_state_dict,
                                                         get_optimizer_state_dict)
    flat = StateDictOptions(flatten_optimizer_state_dict=True)
    frozen = frozen_keys(runner)  # a LoRA run's base: reloaded with the run, never changed
    state: dict[str, Any] = {f"model.{k}": v for k, v in get_model_state_dict(runner).items()
                             if k not in frozen}
    for name, opt in optimizers.items():
        for k, v in get_optimizer_state_dict(runner, opt, options=flat).items():
            state[f"optim.{name}.{k}"] = v
    for k, v in (ema.shadow.items() if ema is not None else ()):
        state[f"ema.{k}"] = v
    return state


def _split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for DCP, the other values for JSON). A tied weight (a GPT's head and token
    embedding) goes once, under its first name: safetensors refuses shared memory, and
    loading one name fills both."""
    from torch.distributed.tensor import DTensor
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        local = v.to_local() if isinstance(v, DTensor) else v
        where = (local.untyped_storage().data_ptr(), local.storage_offset(), tuple(v.shape))
        if local.numel() and where in seen:
            continue
        seen.add(where)
        tensors[k] = v
    return tensors, {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}


def _rng_state() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def _raise_os_error(e: Exception) -> None:
    """DCP gathers every rank's failure into one CheckpointException: re-raise a rank's
    OSError (a full disk, a read-only folder) as itself, so the engine reports one line."""
    for failure in getattr(e, "failures", {}).values():
        inner = failure[0] if isinstance(failure, tuple) else failure
        if isinstance(inner, OSError):
            raise inner from None
    raise OSError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def save_sharded(folder: Path, step: int, runner: nn.Module, optimizers: dict, ema,
                 cfg: dict) -> Path:
    """Every rank: write the sharded training state at ``step`` into ``folder``; keep the
    newest ``KEEP`` checkpoints. Returns the checkpoint's path."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    rank, world = dist.get_rank(), dist.get_world_size()
    final = folder / f"step-{step:07d}"
    tmp = folder / f".step-{step:07d}.sharded.tmp"
    def setup() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / SHARDS_DIR).mkdir(parents=True)
    _on_every_rank(setup if rank == 0 else None)
    try:
        tensors, values = _split(_flat_state(runner, optimizers, ema))
        try:
            dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(
                str(tmp / SHARDS_DIR), save_distributed=True))
        except dcp.api.CheckpointException as e:
            _raise_os_error(e)
        # every shard is on disk before rank 0 publishes the checkpoint
        _on_every_rank(lambda: save_safetensors(_rng_state(), tmp / f"rng-{rank:05d}.safetensors"))
        if rank == 0:
            meta = {"step": step, "config": cfg, "values": values, "world": world,
                    "format": FORMAT}
            (tmp / STATE_JSON).write_text(json.dumps(meta, default=list))
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            atomic_write_text(folder / LATEST_NAME, final.name + "\n")
            for old in sorted(p for p in folder.glob("step-*") if p.is_dir())[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
    except BaseException:
        if rank == 0:  # a failed write leaves no half checkpoint behind; latest is untouched
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _on_every_rank(write: Any) -> None:
    """Run ``write`` (None: nothing) here, then agree with every rank on whether all wrote:
    a rank whose write failed raises its OSError, the others one of their own, so that no
    rank waits forever at a barrier for one that gave up."""
    import torch.distributed as dist
    error: OSError | None = None
    try:
        if write is not None:
            write()
    except OSError as e:
        error = e
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    ok = torch.tensor([0 if error else 1], device=device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if error is not None:
        raise error
    if not ok.item():
        raise OSError(errno.EIO, "another rank could not write its part of the checkpoint")


def is_sharded(path: Path) -> bool:
    """Whether the checkpoint at ``path`` was written by ``save_sharded``."""
    return (path / SHARDS_DIR).is_dir()


def load_sharded(path: Path, runner: nn.Module, optimizers: dict, ema, seed: int) -> int:
    """Every rank: restore model, optimizers, EMA and this rank's RNG from ``path`` (written
    by any number of processes); returns its step. A rank the writer did not have starts its
    RNG from ``seed`` as a fresh run would. Checked before anything is restored."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         set_model_state_dict,
                                                         set_optimizer_state_dict)
    meta = _read_meta(path)
    state = _flat_state(runner, optimizers, ema)  # the live tensors DCP loads into
    tensors, _ = _split(state)
    reader = dcp.HuggingFaceStorageReader(str(path / SHARDS_DIR))
    try:
        saved = reader.read_metadata().state_dict_metadata
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: unreadable sharded checkpoint ({_first(e)}); delete it to "
                           "resume from an earlier one") from None
    wrong = sorted(k for k in tensors if k not in saved
                   or tuple(saved[k].size) != tuple(tensors[k].shape))
    if wrong:
        raise WeightsError(f"{path}: this checkpoint was written by another model or run "
                           f"(tensor {wrong[0]!r} is missing or differs in shape); resume "
                           "with the model that wrote it, or start afresh with another --out")
    dcp.load(tensors, storage_reader=reader)
    for k, v in meta["values"].items():  # JSON turned tuples (betas) into lists
        state[k] = tuple(v) if isinstance(state.get(k), tuple) else v
    # strict=False: a LoRA run's frozen base is not in the checkpoint (the rest was checked)
    set_model_state_dict(runner, {k[6:]: v for k, v in state.items() if k.startswith("model.")},
                         options=StateDictOptions(strict=False))
    flat = StateDictOptions(flatten_optimizer_state_dict=True)
    for name, opt in optimizers.items():
        prefix = f"optim.{name}."
        set_optimizer_state_dict(runner, opt, {k[len(prefix):]: v for k, v in state.items()
                                               if k.startswith(prefix)}, options=flat)
    _restore_rng(path / f"rng-{dist.get_rank():05d}.safetensors", seed)
    return int(meta["step"])


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable checkpoint ({_first(e)}); delete it to resume "
                           "from an earlier one") from None
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT
            and isinstance(meta.get("step"), int) and isinstance(meta.get("values"), dict)):
        raise WeightsError(f"{path}: malformed state.json (not a {FORMAT} checkpoint); delete "
                           "it to resume from an earlier one")
    return meta


def _restore_rng(rng_file: Path, seed: int) -> None:
    """This rank's RNG as saved; a rank new to the run is seeded as a fresh rank would be."""
    import torch.distributed as dist
    if not rng_file.is_file():
        torch.manual_seed(seed * 1000 + dist.get_rank())
        return
    from safetensors.torch import load_file
    rng = load_file(str(rng_file))
    torch.set_rng_state(rng["rng.torch"])
    if torch.cuda.is_available() and "rng.cuda" in rng:
        torch.cuda.set_rng_state(rng["rng.cuda"])


def _first(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


__all__ = ["save_sharded", "load_sharded", "is_sharded", "FORMAT"]
