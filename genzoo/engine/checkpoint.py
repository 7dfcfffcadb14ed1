"""Training checkpoints: safetensors + JSON (never pickle), written atomically.

A checkpoint is ``checkpoints/step-NNNNNNN/`` holding ``state.safetensors`` (model, EMA and
optimizer tensors, RNG states) and ``state.json`` (step, hyper-parameters, optimizer scalars).
It is written into a temp folder and renamed into place, then ``checkpoints/latest`` is
replaced atomically: a kill at any instant leaves the previous complete checkpoint in use, and
a write that fails (a full disk) removes its temp folder and raises the ``OSError`` (which the
engine reports in one line), leaving ``latest`` on the previous checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import WeightsError
from genzoo.fsutil import atomic_write_text
from genzoo.modelio import save_safetensors
from genzoo.names import LATEST_NAME, STATE_JSON, STATE_WEIGHTS

KEEP = 2
#: A sharded (``strategy="fsdp"``) checkpoint's tensor folder (genzoo.engine.sharded_checkpoint).
SHARDS_DIR = "shards"


def save_checkpoint(folder: Path, step: int, model, optimizers: dict, ema, cfg: dict,
                    scalers: dict | None = None) -> Path:
    """Write the full training state at ``step``; keep the newest ``KEEP`` checkpoints.

    ``scalers`` (stage -> ``torch.amp.GradScaler``, fp16 runs only) are plain numbers: they go
    to state.json."""
    folder.mkdir(parents=True, exist_ok=True)
    from genzoo.engine.parts import frozen_keys
    tensors: dict[str, torch.Tensor] = {}
    frozen = frozen_keys(model)  # a LoRA run's base: reloaded with the run, never changed
    for k, v in model.state_dict().items():
        if k not in frozen:
            tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    if ema is not None:
        for k, v in ema.shadow.items():
            tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    optim_meta = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optim.{name}.{idx}.{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        optim_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tensors = _dedupe(tensors)
    meta = {"step": step, "config": cfg, "optimizers": optim_meta, "format_version": 1,
            "scalers": {name: s.state_dict() for name, s in (scalers or {}).items()}}
    final = folder / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".step-{step:07d}.", suffix=".tmp"))
    try:
        save_safetensors(tensors, tmp / STATE_WEIGHTS)
        (tmp / STATE_JSON).write_text(json.dumps(meta, default=list))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(folder / LATEST_NAME, final.name + "\n")
    for old in sorted(p for p in folder.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The last complete checkpoint in ``folder`` (per ``latest``), or None."""
    pointer = folder / LATEST_NAME
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip()
    # a sharded checkpoint keeps its tensors in SHARDS_DIR; it is renamed into place whole
    complete = (path / STATE_JSON).is_file() and ((path / STATE_WEIGHTS).is_file()
                                                  or (path / SHARDS_DIR).is_dir())
    return path if complete else None


def load_checkpoint(path: Path, model, optimizers: dict, ema, device,
                    scalers: dict | None = None) -> int:
    """Restore model, optimizers, EMA, fp16 grad scalers and RNG states from ``path``;
    returns its step.

    Everything is checked before anything is restored: a truncated or malformed state file,
    or a checkpoint written by another architecture (other tensor names or shapes), is one
    ``WeightsError`` and leaves the model as it was."""
    from genzoo.engine.parts import frozen_keys
    meta, tensors = _read_checkpoint(path)
    frozen = frozen_keys(model)
    own = {k: v for k, v in model.state_dict().items() if k not in frozen}
    saved = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    wrong = sorted(set(own) ^ set(saved)) or sorted(
        k for k in own if tuple(own[k].shape) != tuple(saved[k].shape))
    if wrong:
        raise WeightsError(f"{path}: this checkpoint was written by another model (tensor "
                           f"{wrong[0]!r} differs in name or shape); resume with the model "
                           "that wrote it, or start afresh with another --out")
    missing = [f"ema.{k}" for k in (ema.shadow if ema is not None else ())
               if f"ema.{k}" not in tensors] + [n for n in optimizers
                                                if n not in meta["optimizers"]]
    if missing or "rng.torch" not in tensors:
        raise WeightsError(f"{path}: checkpoint lacks {(missing or ['rng.torch'])[0]}; it was "
                           "written by another model or run; start afresh with another --out")
    try:
        _restore(path, meta, tensors, saved, model, optimizers, ema, device, scalers)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: checkpoint does not fit this run ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); delete it to resume "
                           "from an earlier one, or start afresh with another --out") from None
    return int(meta["step"])


def _read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """state.json (shape-checked) and state.safetensors, or one WeightsError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    hint = "delete it to resume from an earlier one"
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(path / STATE_WEIGHTS))
    except (OSError, ValueError, SafetensorError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise WeightsError(f"{path}: unreadable checkpoint ({first}); {hint}") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("step"), int)
            and isinstance(meta.get("optimizers"), dict)):
        raise WeightsError(f"{path}: malformed state.json (no integer 'step' or no "
                           f"'optimizers'); {hint}")
    return meta, tensors


def _restore(path: Path, meta: dict, tensors: dict, saved: dict, model, optimizers: dict, ema,
             device, scalers: dict | None) -> None:
    """Copy a checked checkpoint's state into the live objects."""
    model.load_state_dict(saved, strict=False)  # checked complete by load_checkpoint
    if ema is not None:
        for k in ema.shadow:
            ema.shadow[k].copy_(tensors[f"ema.{k}"])
    for name, opt in optimizers.items():
        m = meta["optimizers"][name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, v in tensors.items():
            if key.startswith(prefix):
                idx, k = key[len(prefix):].split(".", 1)
                state.setdefault(int(idx), {})[k] = v.to(device)
        for idx, sc in m["scalars"].items():
            state.setdefault(int(idx), {}).update(sc)
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in m["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
    for name, scaler in (scalers or {}).items():
        if meta.get("scalers", {}).get(name):  # absent: saved by a run in another dtype
            scaler.load_state_dict(meta["scalers"][name])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        states = [tensors[f"rng.cuda.{i}"] for i in range(n) if f"rng.cuda.{i}" in tensors]
        if len(states) == n:
            torch.cuda.set_rng_state_all(states)


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied weights): give each its own copy."""
    seen = set()
    out = {}
    for k, v in tensors.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else None
        out[k] = v.clone() if ptr in seen else v
        if ptr is not None:
            seen.add(ptr)
    return out
