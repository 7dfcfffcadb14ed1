"""The one finetune engine every family trains with.

A family supplies its loss (``training_loss`` or several ``train_stages``, e.g. a GAN's
discriminator then generator) and ``prepare_data``. The engine supplies the rest: devices,
AdamW with warm-up and cosine decay, gradient clipping and accumulation, bf16 autocast, EMA
weights, seeding, atomic checkpoints with exact resume, a NaN guard, progress, JSON-lines
metrics, periodic sample grids, DistributedDataParallel under ``torchrun``, and at the end a
``save_pretrained`` folder that ``genzoo.load`` and ``genzoo sample`` accept.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .errors import OptionError, TrainingDivergedError
from .model import GenerativeModel, resolve_device

#: A loaded (pretrained) model finetunes at this fraction of its family's from-scratch learning
#: rate unless ``lr`` is given: measured on diffusion-mnist, 10 steps at the from-scratch rate
#: took FD (n=50) from 19 to 118 before any adaptation could help.
FINETUNE_LR_SCALE = 0.1

#: Engine-wide defaults; a family's ``train_defaults`` and the caller's keywords override them.
DEFAULTS: dict[str, Any] = dict(batch_size=64, lr=1e-3, warmup=100, weight_decay=0.0,
                                grad_clip=1.0, ema_decay=0.999, betas=(0.9, 0.99),
                                min_lr_ratio=0.1)


@dataclass
class FinetuneResult:
    """What ``finetune`` returns: the saved folder, the final metrics, steps and wall time."""

    folder: Path | None
    metrics: dict[str, float]
    steps: int
    seconds: float
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list, repr=False)


class _StageRunner(nn.Module):
    """Routes ``forward(batch, stage)`` to a stage's loss so that DDP sees every loss pass
    through ``forward`` (that is where it hooks its gradient all-reduce)."""

    def __init__(self, model: GenerativeModel):
        super().__init__()
        self.model = model
        self.stages = model.train_stages()

    def forward(self, batch, stage: str):
        return self.stages[stage].loss(batch)


class EMA:
    """Exponential moving average of a module's floating-point tensors, with the usual
    warm-up (decay grows as (1+t)/(10+t)) so early averages are not dominated by a random init;
    no warm-up when the starting weights are pretrained (they are worth averaging from)."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        self.module, self.decay, self.warmup = module, decay, warmup
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()
                       if v.is_floating_point()}

    @torch.no_grad()
    def update(self, step: int) -> None:
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


class _Batches:
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


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _make_optimizer(params, lr, weight_decay, betas, device) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices/kernels (not biases or norms), as is standard."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas),
                             fused=fused or None)


def _dist_env():
    """(rank, world, local_rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def finetune(model: GenerativeModel, data: Any, *, steps: int, out: str | os.PathLike | None = None,
             batch_size: int | None = None, lr: float | None = None, warmup: int | None = None,
             weight_decay: float | None = None, grad_clip: float | None = None,
             ema_decay: float | None = None, grad_accum: int = 1, precision: str = "auto",
             seed: int = 0, save_every: int | None = None, sample_every: int | None = None,
             resume: bool = False, stop_after: int | None = None, progress: bool = True,
             log_every: int = 50, tensorboard: bool = False, device: str | None = None,
             save_dtype: torch.dtype | None = None) -> FinetuneResult:
    """Train ``model`` on ``data`` for ``steps`` optimizer steps; see the module docstring.

    ``out`` receives checkpoints/, metrics.jsonl, samples/ and, at the end, the model folder
    itself. ``resume=True`` continues from ``out``'s last complete checkpoint with identical
    results to an uninterrupted run. ``stop_after=K`` checkpoints and stops at step K (a
    time-sliced run; resume it later). Returns a :class:`FinetuneResult`.
    """
    if steps < 1:
        raise OptionError(f"steps must be at least 1, got {steps}")
    if grad_accum < 1:
        raise OptionError(f"grad_accum must be at least 1, got {grad_accum}")
    cfg = {**DEFAULTS, **model.train_defaults}
    given = dict(batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=weight_decay,
                 grad_clip=grad_clip, ema_decay=ema_decay)
    if model.pretrained:
        cfg["lr"] = cfg["lr"] * FINETUNE_LR_SCALE
    cfg.update({k: v for k, v in given.items() if v is not None})
    # short runs warm up for at most a tenth of their steps
    warmup_steps = min(int(cfg["warmup"]), max(1, steps // 10))

    rank, world, local_rank = _dist_env()
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if distributed and torch.cuda.is_available():
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = resolve_device(device or ("cpu" if distributed else "auto"))
    model.to(dev)
    amp_dtype = _precision(precision, dev)
    is_main = rank == 0
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise OptionError("--resume needs --out (the folder holding the checkpoints)")

    dataset = model.prepare_data(data)
    batches = _Batches(dataset, int(cfg["batch_size"]), seed, rank, world)
    runner = _StageRunner(model)
    trainer: nn.Module = runner
    if distributed:
        trainer = nn.parallel.DistributedDataParallel(
            runner, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=len(runner.stages) > 1)
    optimizers = {name: _make_optimizer(st.params, cfg["lr"] * st.lr_scale, cfg["weight_decay"],
                                        cfg["betas"], dev) for name, st in runner.stages.items()}
    ema = (EMA(model.ema_module(), float(cfg["ema_decay"]), warmup=not model.pretrained)
           if model.uses_ema else None)

    start_step = 0
    if resume:
        ckpt = latest_checkpoint(out / "checkpoints")
        if ckpt is not None:
            start_step = load_checkpoint(ckpt, model, optimizers, ema, dev)
    else:
        torch.manual_seed(seed * 1000 + rank)

    writer = _MetricsWriter(out, is_main and out is not None, tensorboard, resume and start_step > 0)
    bar = _bar(progress and is_main, steps, start_step)
    history: list[dict[str, float]] = []
    last = {}
    t0 = time.perf_counter()
    t_log, seen_since_log = t0, 0
    end = min(steps, stop_after) if stop_after else steps
    model.train()
    step = start_step
    for step in range(start_step, end):
        for name, opt in optimizers.items():
            lr_now = lr_at(step, steps, cfg["lr"] * runner.stages[name].lr_scale, warmup_steps,
                           cfg["min_lr_ratio"])
            for g in opt.param_groups:
                g["lr"] = lr_now
        for name, opt in optimizers.items():
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(grad_accum):
                batch = _to_device(batches(step, micro, grad_accum), dev)
                sync = nullcontext() if (not distributed or micro == grad_accum - 1) else trainer.no_sync()
                with sync, _autocast(dev, amp_dtype):
                    loss = trainer(batch, name)
                if not torch.isfinite(loss.detach()):
                    _diverged(step, name, loss, out)
                (loss / grad_accum).backward()
                total += float(loss.detach()) / grad_accum
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(runner.stages[name].params, cfg["grad_clip"])
            opt.step()
            last[f"loss/{name}" if len(optimizers) > 1 else "loss"] = total
        if ema is not None:
            ema.update(step)
        seen_since_log += batches.bs * world * grad_accum
        done = step + 1
        if done % log_every == 0 or done == end:
            now = time.perf_counter()
            row = {"step": done, **last, "lr": lr_now,
                   "samples_per_s": seen_since_log / max(now - t_log, 1e-9)}
            t_log, seen_since_log = now, 0
            history.append(row)
            writer.write(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
        bar.update(1)
        if out is not None and is_main and save_every and done % save_every == 0 and done < end:
            save_checkpoint(out / "checkpoints", done, model, optimizers, ema, cfg)
        if out is not None and is_main and sample_every and done % sample_every == 0:
            _sample_grid(model, ema, out / "samples" / f"step-{done:07d}")
    bar.close()
    seconds = time.perf_counter() - t0
    stopped = end < steps
    folder = None
    if out is not None and is_main:
        if stopped:
            save_checkpoint(out / "checkpoints", end, model, optimizers, ema, cfg)
        else:
            if ema is not None:
                ema.copy_to(model.ema_module())
            folder = model.save_pretrained(out, card={"summary": f"Finetuned for {steps} steps "
                                                      f"with genzoo.", "metrics": last},
                                           dtype=save_dtype)
            writer.write({"step": steps, "event": "saved", "folder": str(out)})
    elif not stopped and ema is not None:
        ema.copy_to(model.ema_module())
    writer.close()
    if distributed:
        torch.distributed.barrier()
    model.eval()
    return FinetuneResult(folder, dict(last), end, seconds, stopped, history)


def _precision(precision: str, dev: torch.device):
    if precision == "auto":
        return torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision in ("fp32", "32", "float32"):
        return None
    if precision in ("bf16", "bfloat16"):
        return torch.bfloat16
    raise OptionError(f"unknown precision {precision!r}: use auto, fp32 or bf16")


def _autocast(dev, dtype):
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext()


def _diverged(step, stage, loss, out):
    ckpt = latest_checkpoint(out / "checkpoints") if out is not None else None
    kept = f"; the last good checkpoint is {ckpt}" if ckpt else ""
    raise TrainingDivergedError(f"the {stage} loss became {float(loss)} at step {step + 1}{kept}; "
                                "lower --lr or check the data for NaN/Inf values")


def _sample_grid(model, ema, path: Path) -> None:
    """Write a 16-sample grid (or texts) with the EMA weights, then restore the live weights."""
    backup = ema.copy_to(model.ema_module()) if ema is not None else None
    try:
        samples = model.sample(16, seed=0)
        samples.save(path.with_suffix(".txt" if samples.kind == "text" else ".png"))
    finally:
        if backup is not None:
            state = model.ema_module().state_dict()
            with torch.no_grad():
                for k, v in backup.items():
                    state[k].copy_(v)
        model.train()


class _MetricsWriter:
    """metrics.jsonl (appended, rank 0 only) and, when asked and installed, TensorBoard."""

    def __init__(self, out: Path | None, enabled: bool, tensorboard: bool, append: bool):
        self.f = self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.f = open(out / "metrics.jsonl", "a" if append else "w")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise OptionError("--tensorboard needs the tensorboard package: "
                                  "pip install tensorboard") from e
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict) -> None:
        if self.f is None:
            return
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
        if self.tb is not None and "step" in row:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        if self.tb is not None:
            self.tb.close()


def _bar(enabled: bool, total: int, initial: int):
    if not enabled:
        class _Null:
            def update(self, k): pass
            def set_postfix(self, d): pass
            def close(self): pass
        return _Null()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="finetune", unit="step", dynamic_ncols=True)
