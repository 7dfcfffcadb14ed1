"""``finetune(strategy="fsdp")``: the engine's ``Trainer`` with FSDP2 sharding.

Only what sharding changes is overridden: the model is sharded before its optimizers are made
(their parameters are the sharded ones), gradient sync is FSDP's, mixed precision is its
policy, checkpoints are sharded DCP ones every rank writes (``genzoo.engine.
sharded_checkpoint``), the sample grid is run by every rank (each all-gather needs them all)
and the final folder is written by rank 0 from the gathered full state. Outside torchrun it
runs in a 1-process group, which is how a 2-process checkpoint resumes in one process.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch

from genzoo.devices import resolve_device, resolve_dtype
from genzoo.engine.checkpoint import SHARDS_DIR
from genzoo.engine.fsdp import (destroy_process_group, ensure_process_group, full_state_dict,
                                gathered, plain_state, refuse_unsupported, set_gradient_sync,
                                shard)
from genzoo.engine.parts import Batches, StageRunner
from genzoo.engine.sharded_checkpoint import load_sharded, save_sharded
from genzoo.engine.train import FinetuneResult, Trainer
from genzoo.errors import OptionError
from genzoo.names import CHECKPOINTS_DIR


class FsdpTrainer(Trainer):
    """A ``Trainer`` whose model is sharded with ``fully_shard`` across the process group."""

    own_group = False

    def run(self) -> FinetuneResult:
        """``Trainer.run``, then the end of the 1-process group this run started, if any."""
        try:
            return super().run()
        finally:
            if self.own_group:
                destroy_process_group()

    def prepare(self) -> None:
        """Device, refusals, process group, data, then shard and make optimizers and EMA."""
        self.distributed = self.world > 1
        if torch.cuda.is_available() and self.distributed:
            self.dev = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.dev)
        else:
            self.dev = resolve_device(self.opts.device or ("cpu" if self.distributed else "auto"))
        self.amp_dtype = resolve_dtype(self.opts.dtype, self.dev)
        refuse_unsupported(self.model, self.opts, self.amp_dtype)
        self.own_group = ensure_process_group(self.world, self.dev)
        self.model.to(self.dev)
        self.batches = Batches(self.model.prepare_data(self.data), int(self.cfg["batch_size"]),
                               self.opts.seed, self.rank, self.world)
        self.runner = self.net = StageRunner(self.model)
        self.stages = self.runner.stages
        # fully_shard replaces each parameter by a sharded one: map the stages' lists by name
        names = {id(p): n for n, p in self.runner.named_parameters(remove_duplicate=False)}
        shard(self.runner, self.model, self.amp_dtype, self.dev)
        now = dict(self.runner.named_parameters(remove_duplicate=False))
        for stage in self.stages.values():
            stage.params = [now[names[id(p)]] for p in stage.params]
        self._optimizers_and_ema()
        self.scalers = {}  # fp16 is refused above; bf16 needs no loss scaling

    def _load(self, ckpt: Path) -> int:
        if not (ckpt / SHARDS_DIR).is_dir():
            raise OptionError(f"{ckpt} was written with --strategy ddp: resume it with "
                              "--strategy ddp")
        return load_sharded(ckpt, self.runner, self.optimizers, self.ema, self.opts.seed)

    def _no_sync(self, skip: bool) -> Any:
        set_gradient_sync(self.runner, not skip)
        return nullcontext()

    def _autocast(self) -> Any:
        return nullcontext()  # the MixedPrecisionPolicy casts; autocast would cast again

    def checkpoint(self, step: int) -> None:
        """Every rank writes its shard of the training state at ``step``."""
        if self.out is not None:
            with self._writing():
                save_sharded(self.out / CHECKPOINTS_DIR, step, self.runner, self.optimizers,
                             self.ema, self.cfg)

    @contextmanager
    def _sampling(self) -> Iterator[bool]:
        # every rank runs the same forward calls: each unit's all-gather needs them all
        with gathered(self.runner), torch.no_grad():
            yield True

    def _save_model(self) -> Path | None:
        """Every rank helps gather the full weights; rank 0 writes the ordinary folder."""
        if self.out is None:
            return None
        full = full_state_dict(self.model)
        if not self.is_main:
            return None
        with plain_state(self.model, full):
            return super()._save_model()


__all__ = ["FsdpTrainer"]
