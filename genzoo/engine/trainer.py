"""The finetune engine's ``Trainer``: one run in named phases (see ``genzoo.engine.train``,
whose ``finetune`` makes one). ``genzoo.engine.fsdp_trainer.FsdpTrainer`` overrides what FSDP
changes; this module knows nothing of it."""
from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from genzoo.batching import progress_bar
from genzoo.devices import autocast, resolve_device, resolve_dtype
from genzoo.engine.checkpoint import (SHARDS_DIR, latest_checkpoint, load_checkpoint,
                                      save_checkpoint)
from genzoo.engine.parts import (EMA, Batches, FinetuneResult, MetricsWriter, StageRunner,
                                 dist_env, grid_samples, lr_at, make_optimizer, output_error,
                                 samples_path, to_device)
from genzoo.errors import GenzooError, OptionError, TrainingDivergedError
from genzoo.names import CHECKPOINTS_DIR, SAMPLES_DIR

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel

class Trainer:
    """One finetune run, in phases: ``prepare`` (devices, data, optimizers, EMA), ``resume``
    (a checkpoint, or a fresh seed), ``run_steps`` (``train_step`` per step, logging,
    ``checkpoint``, sample grids), ``finish`` (save the folder, or a checkpoint when stopped
    early). ``run`` calls them in that order."""

    def __init__(self, model: GenerativeModel, data: Any, steps: int, out: Path | None,
                 opts: Any, cfg: dict[str, Any]):
        self.model, self.data, self.steps, self.out, self.opts = model, data, steps, out, opts
        self.cfg = cfg  # the hyper-parameters (genzoo.engine.train.hyper_parameters)
        # short runs warm up for at most a tenth of their steps
        self.warmup_steps = min(int(self.cfg["warmup"]), max(1, steps // 10))
        self.end = min(steps, opts.stop_after) if opts.stop_after else steps
        self.rank, self.world, self.local_rank = dist_env()
        self.is_main = self.rank == 0
        self.start_step = 0
        self.last: dict[str, float] = {}
        self.history: list[dict[str, float]] = []

    def run(self) -> FinetuneResult:
        """All phases in order; the result ``finetune`` returns.

        Library warnings (PyTorch's, a family's) are held back and shown at each log row and
        at the end; those raised in the steps leading to a genzoo error (a NaN loss, a full
        disk) are dropped, so that the error's one line is all the user sees."""
        with warnings.catch_warnings(record=True) as self.caught:
            try:
                self.prepare()
                self.resume()
                self.run_steps()
                result = self.finish()
            except GenzooError:
                self.caught.clear()
                raise
            finally:
                self._show_warnings()
        return result

    # ---- phases -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Device (one per rank under torchrun), autocast dtype, data, DDP, optimizers, EMA."""
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if self.distributed and torch.cuda.is_available():
            self.dev = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.dev)
        else:
            self.dev = resolve_device(self.opts.device or ("cpu" if self.distributed else "auto"))
        self.model.to(self.dev)
        self.amp_dtype = resolve_dtype(self.opts.dtype, self.dev)
        self.batches = Batches(self.model.prepare_data(self.data), int(self.cfg["batch_size"]),
                               self.opts.seed, self.rank, self.world)
        self.runner = StageRunner(self.model)
        self.stages = self.runner.stages
        self.net: nn.Module = self.runner
        if self.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.runner, device_ids=[self.dev.index] if self.dev.type == "cuda" else None,
                find_unused_parameters=len(self.stages) > 1)
        self._optimizers_and_ema()
        # fp16 overflows where bf16 does not: scale the loss so small gradients survive
        self.scalers = ({name: torch.amp.GradScaler(self.dev.type) for name in self.stages}
                        if self.amp_dtype == torch.float16 else {})

    def _optimizers_and_ema(self) -> None:
        """One AdamW per stage over its parameters, and the EMA when the family keeps one."""
        self.optimizers = {name: make_optimizer(st.params, self.cfg["lr"] * st.lr_scale,
                                                self.cfg["weight_decay"], self.cfg["betas"],
                                                self.dev) for name, st in self.stages.items()}
        # from pretrained weights the EMA needs no warm-up: they are worth averaging from
        self.ema = (EMA(self.model.ema_module(), float(self.cfg["ema_decay"]),
                        warmup=not self.model.pretrained) if self.model.uses_ema else None)

    def resume(self) -> None:
        """With ``resume``: restore ``out``'s last complete checkpoint (weights, optimizers,
        EMA, scalers, RNG), so the run continues as if never stopped. Otherwise, or when there
        is none yet, seed the global RNG (per rank) that families draw training noise from.
        Then open metrics.jsonl: appended to when resumed, else started afresh."""
        ckpt = latest_checkpoint(self.out / CHECKPOINTS_DIR) if self.opts.resume else None
        if ckpt is not None:
            self.start_step = self._load(ckpt)
        else:
            torch.manual_seed(self.opts.seed * 1000 + self.rank)
        with self._writing():
            self.writer = MetricsWriter(self.out, self.is_main and self.out is not None,
                                        self.opts.tensorboard, self.start_step > 0)

    def _load(self, ckpt: Path) -> int:
        """Restore ``ckpt`` (this strategy's format); returns its step."""
        if (ckpt / SHARDS_DIR).is_dir():
            raise OptionError(f"{ckpt} is a sharded checkpoint written with --strategy fsdp: "
                              "resume it with --strategy fsdp (on any number of processes)")
        return load_checkpoint(ckpt, self.model, self.optimizers, self.ema, self.dev,
                               self.scalers)

    def run_steps(self) -> None:
        """Steps ``start_step`` to ``end``: train, update the EMA, log every ``log_every``,
        checkpoint every ``save_every`` and write a sample grid every ``sample_every``."""
        opts = self.opts
        bar = progress_bar(opts.progress and self.is_main, self.steps, "finetune", unit="step",
                           initial=self.start_step, leave=True)
        self.t0 = t_log = time.perf_counter()
        seen = 0
        self.model.train()
        for step in range(self.start_step, self.end):
            lr_now = self.train_step(step)
            if self.ema is not None:
                self.ema.update(step)
            seen += self.batches.bs * self.world * opts.grad_accum
            done = step + 1
            if done % opts.log_every == 0 or done == self.end:
                now = time.perf_counter()
                row = {"step": done, **self.last, "lr": lr_now,
                       "samples_per_s": seen / max(now - t_log, 1e-9)}
                t_log, seen = now, 0
                self.history.append(row)
                self._show_warnings()
                with self._writing():
                    self.writer.write(row)
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
            bar.update(1)
            if opts.save_every and done % opts.save_every == 0 and done < self.end:
                self.checkpoint(done)
            if self.out is not None and opts.sample_every and done % opts.sample_every == 0:
                self._sample_grid(self.out / SAMPLES_DIR / f"step-{done:07d}")
        bar.close()

    def train_step(self, step: int) -> float:
        """One optimizer step of every stage, in order, each over ``grad_accum`` micro-batches
        (DDP all-reduces only on the last); stops on a non-finite loss. Returns the last
        stage's learning rate (the one logged)."""
        accum = self.opts.grad_accum
        for name, opt in self.optimizers.items():
            lr_now = lr_at(step, self.steps, self.cfg["lr"] * self.stages[name].lr_scale,
                           self.warmup_steps, self.cfg["min_lr_ratio"])
            for g in opt.param_groups:
                g["lr"] = lr_now
        for name, opt in self.optimizers.items():
            scaler = self.scalers.get(name)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(accum):
                batch = to_device(self.batches(step, micro, accum), self.dev)
                with self._no_sync(micro < accum - 1), self._autocast():
                    loss = self.net(batch, name)
                if not torch.isfinite(loss.detach()):
                    self._diverged(step, name, loss)
                scaled = loss / accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                total += float(loss.detach()) / accum
            if scaler:
                scaler.unscale_(opt)  # clip the true gradients
            if self.cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(self.stages[name].params, self.cfg["grad_clip"])
            if scaler:
                scaler.step(opt)  # skipped when the scaled gradients overflowed
                scaler.update()
            else:
                opt.step()
            self.last[f"loss/{name}" if len(self.optimizers) > 1 else "loss"] = total
        return lr_now

    def _no_sync(self, skip: bool) -> Any:
        """DDP's ``no_sync`` when ``skip`` (a micro-batch before the last): no all-reduce."""
        return self.net.no_sync() if self.distributed and skip else nullcontext()

    def _autocast(self) -> Any:
        """The mixed-precision context of a forward pass (autocast in ``amp_dtype``)."""
        return autocast(self.dev, self.amp_dtype)

    def checkpoint(self, step: int) -> None:
        """Write the full training state at ``step`` into ``out``/checkpoints (rank 0)."""
        if self.out is not None and self.is_main:
            with self._writing():
                save_checkpoint(self.out / CHECKPOINTS_DIR, step, self.model, self.optimizers,
                                self.ema, self.cfg, self.scalers)

    def finish(self) -> FinetuneResult:
        """Stopped early: a checkpoint to resume from. Done: the EMA weights into the model
        and, with ``out``, a ``save_pretrained`` folder there. Then close and sync ranks."""
        seconds = time.perf_counter() - self.t0
        stopped = self.end < self.steps
        folder = None
        if stopped:
            self.checkpoint(self.end)
        else:
            if self.ema is not None:
                self.ema.copy_to(self.model.ema_module())
            folder = self._save_model()
        self.writer.close()
        if self.distributed:
            torch.distributed.barrier()
        self.model.eval()
        return FinetuneResult(folder, dict(self.last), self.end, seconds, stopped, self.history)

    def _save_model(self) -> Path | None:
        """Rank 0, with ``out``: the ``save_pretrained`` folder; returns it (else None)."""
        if self.out is None or not self.is_main:
            return None
        # the last losses are facts of training, not evaluation figures
        card = {"summary": f"Finetuned for {self.steps} steps with genzoo.",
                "metrics": {f"train_{k}": v for k, v in self.last.items()}}
        with self._writing():
            folder = self.model.save_pretrained(self.out, card=card, dtype=self.opts.save_dtype)
            self.writer.write({"step": self.steps, "event": "saved", "folder": str(self.out)})
        return folder

    # ---- helpers ------------------------------------------------------------------------
    def _show_warnings(self) -> None:
        """Print the warnings held back since the last call, as Python would have."""
        for w in getattr(self, "caught", None) or ():
            sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno,
                                                    w.line))
        if getattr(self, "caught", None):
            self.caught.clear()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write into ``out`` (read-only, disk full) into one OutputError that
        names the last complete checkpoint, which the failed write never touches."""
        try:
            yield
        except OSError as e:
            ckpt = latest_checkpoint(self.out / CHECKPOINTS_DIR) if self.out is not None else None
            kept = f"; the last complete checkpoint is {ckpt}" if ckpt else ""
            raise output_error(self.out, e, kept) from None

    def _diverged(self, step: int, stage: str, loss: torch.Tensor) -> None:
        ckpt = latest_checkpoint(self.out / CHECKPOINTS_DIR) if self.out is not None else None
        kept = f"; the last good checkpoint is {ckpt}" if ckpt else ""
        raise TrainingDivergedError(f"the {stage} loss became {float(loss.detach())} at step "
                                    f"{step + 1}{kept}; lower --lr or check the data for NaN/Inf "
                                    "values")

    def _sample_grid(self, path: Path) -> None:
        """Rank 0: 16 samples with the EMA weights, written as the model's modality writes
        them (``samples_path``: a PNG grid, texts, a WAV ...), then the live weights back."""
        if not self.is_main:
            return
        module = self.model.ema_module()
        backup = self.ema.copy_to(module) if self.ema is not None else None
        try:
            samples = grid_samples(self.model)
            with self._writing():
                samples.save(samples_path(path, samples.spec()))
        finally:
            if backup is not None:
                EMA.restore(module, backup)
            self.model.train()


__all__ = ["Trainer"]
