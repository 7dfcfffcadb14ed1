"""The finetune engine's building blocks; ``genzoo.engine.train`` puts them together.

Each piece has one job and no knowledge of the others: the DDP-visible stage router, EMA
weights, deterministic resumable batches, the learning-rate schedule, the optimizer, the
metrics writer and the run folder's claim (marker and lock). Autocast and the progress bar are
the ones sampling uses (``genzoo.devices.autocast``, ``genzoo.batching.progress_bar``); the
options' checks are their declaration's (``genzoo.engine.options``).
"""
from __future__ import annotations

import contextlib
import inspect
import errno
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from genzoo.errors import OptionError, OutputError
from genzoo.fsutil import LockHeld, atomic_write_text, exclusive_lock
from genzoo.names import (CHECKPOINTS_DIR, CONFIG_NAME, LATEST_NAME, METRICS_NAME, RUN_LOCK,
                          RUN_MARKER, TENSORBOARD_DIR)

if TYPE_CHECKING:  # the engine sits below genzoo.model (model.finetune imports it)
    from genzoo.model import GenerativeModel


class StageRunner(nn.Module):
    """Routes ``forward(batch, stage)`` to a stage's loss so that DDP sees every loss pass
    through ``forward`` (that is where it hooks its gradient all-reduce)."""

    def __init__(self, model: GenerativeModel):
        super().__init__()
        self.model = model
        self.stages = model.train_stages()

    def forward(self, batch, stage: str) -> torch.Tensor:
        """The loss of ``stage`` on ``batch``."""
        return self.stages[stage].loss(batch)


def frozen_keys(module: nn.Module) -> set[str]:
    """``state_dict`` names of the parameters that do not train (``requires_grad`` False:
    the base weights under a LoRA adapter). They never change during a run, so the EMA
    does not average them and checkpoints do not store them (the run reloads its base)."""
    return {name for name, p in module.named_parameters(remove_duplicate=False)
            if not p.requires_grad}


class EMA:
    """Exponential moving average of a module's floating-point tensors, with the usual
    warm-up (decay grows as (1+t)/(10+t)) so early averages are not dominated by a random init;
    no warm-up when the starting weights are pretrained (they are worth averaging from)."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        self.module, self.decay, self.warmup = module, decay, warmup
        frozen = frozen_keys(module)  # constant: their average is themselves
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()
                       if v.is_floating_point() and k not in frozen}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the averages toward the module's weights after step ``step``."""
        d = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        state = self.module.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].detach() for k in keys],
                             1 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Load the averages into ``module``; returns the weights they replaced."""
        state = module.state_dict()
        backup = {k: state[k].detach().clone() for k in self.shadow}
        for k, v in self.shadow.items():
            state[k].copy_(v)
        return backup

    @staticmethod
    @torch.no_grad()
    def restore(module: nn.Module, backup: dict[str, torch.Tensor]) -> None:
        """Put back the weights ``copy_to`` returned (the live, non-averaged ones)."""
        state = module.state_dict()
        for k, v in backup.items():
            state[k].copy_(v)


class Batches:
    """Deterministic batches: step k takes the k-th global batch of a stream of epoch
    permutations seeded by (seed, epoch), so the data position is just the step number and
    a resumed run sees exactly the batches the uninterrupted run would have seen."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.ds, self.n = dataset, len(dataset)
        if self.n == 0:
            raise OptionError("the training data is empty")
        self.bs, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm

    def __call__(self, step: int, micro: int = 0, accum: int = 1):
        """The batch this rank trains on at ``step`` (micro-batch ``micro`` of ``accum``)."""
        pos = step * self.bs * self.world * accum + (micro * self.world + self.rank) * self.bs
        parts, need = [], self.bs
        while need:  # a batch may straddle two epochs
            epoch, off = divmod(pos, self.n)
            take = min(need, self.n - off)
            parts.append(self._permutation(epoch)[off:off + take])
            pos, need = pos + take, need - take
        return self.ds[parts[0] if len(parts) == 1 else torch.cat(parts)]


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_ratio`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def to_device(batch, device: torch.device):
    """``batch`` (a tensor, or lists/tuples/dicts of them) on ``device``; other values as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float, betas,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices/kernels (not biases or norms), as is standard."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas),
                             fused=fused or None)


def dist_env() -> tuple[int, int, int]:
    """(rank, world, local_rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


class MetricsWriter:
    """metrics.jsonl (rank 0 only) and, when asked and installed, TensorBoard.

    The file is only ever appended to, one ``write`` per line on an ``O_APPEND`` descriptor:
    a second run (or a resumed one) adds its rows after the earlier ones, never truncating
    them, and no reader sees half a line."""

    def __init__(self, out: Path | None, enabled: bool, tensorboard: bool, append: bool):
        self.fd: int | None = None
        self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(out / METRICS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise OptionError("--tensorboard needs the tensorboard package: "
                                  "pip install tensorboard") from e
            self.tb = SummaryWriter(str(out / TENSORBOARD_DIR))

    def write(self, row: dict) -> None:
        """Append ``row`` as one JSON line (and its numbers to TensorBoard)."""
        if self.fd is None:
            return
        data = (json.dumps(row) + "\n").encode("utf-8")
        if os.write(self.fd, data) != len(data):  # a disk filling up mid-line
            raise OSError(errno.ENOSPC, "No space left on device (short write to metrics.jsonl)")
        if self.tb is not None and "step" in row:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        """Close the file and the TensorBoard writer."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tb is not None:
            self.tb.close()


@contextlib.contextmanager
def claimed_run_folder(out: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Make ``out`` this run's folder for the ``with`` block, or refuse in one line.

    A non-empty folder genzoo did not create (no ``RUN_MARKER``, no checkpoints) is refused
    unless ``overwrite``: the user's own README.md or config.json are never replaced
    silently. A fresh run into a folder holding an earlier run's checkpoints is refused too
    (its checkpoints would mix with ours) unless ``overwrite`` (they are removed) or
    ``resume``. One run per folder: an OS lock held until the block ends, released by the
    kernel if the process dies, so a second run is refused naming the holder's pid.

    A run that fails (an error, Ctrl-C) before it wrote a checkpoint or its model leaves a
    folder that was absent or empty as it found it: nothing half-made stays under the
    user's name. A checkpoint, or a folder that held anything before, is kept."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; choose another --out")
    ours = (out / RUN_MARKER).is_file() or (out / CHECKPOINTS_DIR / LATEST_NAME).is_file()
    theirs = sorted(p.name for p in out.iterdir() if p.name != RUN_LOCK) if out.is_dir() else []
    if theirs and not ours and not overwrite:
        shown = ", ".join(theirs[:4]) + (" ..." if len(theirs) > 4 else "")
        raise OutputError(f"--out {out} already holds files genzoo did not write ({shown}); "
                          "pass --overwrite to replace them or choose another --out")
    existed, was_empty = out.is_dir(), not theirs
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(out / RUN_LOCK):
            checkpoints = out / CHECKPOINTS_DIR
            if checkpoints.is_dir() and not resume and any(checkpoints.iterdir()):
                if not overwrite:
                    raise OutputError(f"--out {out} holds the checkpoints of an earlier run: pass "
                                      "--resume to continue it, --overwrite to start afresh, "
                                      "or choose another --out")
                shutil.rmtree(checkpoints)
            if not (out / RUN_MARKER).is_file():
                atomic_write_text(out / RUN_MARKER, "a genzoo finetune folder: genzoo may "
                                  "replace the files it wrote here\n")
            yield
    except LockHeld as e:
        holder = f"pid {e.pid}" if e.pid else "another process"
        raise OutputError(f"--out {out} is in use by another finetune ({holder}); wait for it "
                          "to finish or choose another --out") from None
    except BaseException:
        if was_empty and not _kept_work(out):
            _undo_run_folder(out, existed)
        raise


def _kept_work(out: Path) -> bool:
    """Whether ``out`` holds something a failed run should keep: a complete checkpoint
    (resumable) or a saved model (config.json: the run got as far as saving)."""
    # the pointer is written (atomically) only once a checkpoint is complete
    return (out / CHECKPOINTS_DIR / LATEST_NAME).is_file() or (out / CONFIG_NAME).is_file()


def _undo_run_folder(out: Path, existed: bool) -> None:
    """Put a run folder back as the failed run found it: removed when it made it, emptied
    when it was an empty folder (everything in it is then this run's)."""
    with contextlib.suppress(OSError):
        if not existed:
            shutil.rmtree(out)
            return
        for child in list(out.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


@dataclass
class FinetuneResult:
    """What ``finetune`` returns: the saved folder, the final metrics, steps and wall time."""

    folder: Path | None
    metrics: dict[str, float]
    steps: int
    seconds: float
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list, repr=False)


def output_error(out: Path | None, e: OSError, kept: str = "") -> OutputError:
    """A write that failed (read-only folder, full disk) as one line saying what to do."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"the disk is full: cannot write to --out {out} ({reason}){kept}; "
                           "free some space and resume with --resume, or choose another --out")
    return OutputError(f"cannot write to --out {out} ({reason}){kept}; free some space or make "
                       "it writable, or choose another --out")


def grid_samples(model: GenerativeModel) -> Any:
    """The 16 samples (seed 0) of a training grid, drawn by this process alone: where
    ``sample`` can shard across a process group, that is turned off (``distributed="off"``;
    a family's ``sample(..., **options)`` passes it on to ``iter_samples``). Otherwise rank
    0 would wait forever for ranks that are not sampling."""
    params = inspect.signature(model.sample).parameters.values()
    takes = any(p.name == "distributed" or p.kind is p.VAR_KEYWORD for p in params)
    return model.sample(16, seed=0, **({"distributed": "off"} if takes else {}))


def samples_path(path: Path, spec: Any) -> Path:
    """Where a training run writes ``spec``'s samples (``spec``: the model's
    ``genzoo.samples.Modality``): ``path`` with the modality's first writer's suffix (a PNG
    grid, a .txt, a WAV), or ``path`` itself as a folder of one ``sample_suffix`` file per
    sample when the modality declares no writer."""
    suffixes = list(spec.writers())
    return path.with_suffix(suffixes[0]) if suffixes else path


__all__ = ["StageRunner", "FinetuneResult", "output_error", "grid_samples", "EMA", "Batches",
           "lr_at", "to_device", "make_optimizer",
           "dist_env", "MetricsWriter", "claimed_run_folder", "frozen_keys", "RUN_MARKER",
           "RUN_LOCK", "samples_path"]
