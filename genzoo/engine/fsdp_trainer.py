"""``finetune(strategy="fsdp")``: the engine's ``Trainer`` with FSDP2 sharding.

Only what sharding changes is overridden: the model is sharded before its optimizers are made
(their parameters are the sharded ones), gradient sync is FSDP's, mixed precision adds its
policy, checkpoints are sharded DCP ones every rank writes
(``genzoo.engine.sharded_checkpoint``), the sample grid and the final folder come from the full
state every rank helps gather, rank 0 alone sampling and writing. Outside torchrun it runs in
a 1-process group, which is how a 2-process checkpoint resumes in one process.
"""
from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from genzoo.devices import resolve_device, resolve_dtype
from genzoo.engine.checkpoint import SHARDS_DIR
from genzoo.engine.fsdp import (destroy_process_group, ensure_process_group, full_state_dict,
                                plain_state, refuse_unsupported, return_freed_buffers,
                                set_gradient_sync, shard)
from genzoo.engine.lora import adapter_of, load_adapter
from genzoo.engine.parts import (EMA, Batches, FinetuneResult, StageRunner, grid_samples,
                                 samples_path)
from genzoo.engine.sharded_checkpoint import load_sharded, save_sharded
from genzoo.engine.trainer import Trainer
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
        refuse_unsupported(self.model, self.amp_dtype)
        self.own_group = ensure_process_group(self.world, self.dev)
        return_freed_buffers(self.dev)
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

    def checkpoint(self, step: int) -> None:
        """Every rank writes its shard of the training state at ``step``."""
        if self.out is not None:
            with self._writing():
                save_sharded(self.out / CHECKPOINTS_DIR, step, self.runner, self.optimizers,
                             self.ema, self.cfg)

    def _sample_grid(self, path: Path) -> None:
        """Every rank helps gather the (EMA) weights; rank 0 loads them as an ordinary model
        from a temporary folder and samples the grid alone. So no family's sampling code
        ever meets a sharded parameter, and no rank waits on another's forward calls."""
        module = self.model.ema_module()
        backup = self.ema.copy_to(module) if self.ema is not None else None
        try:
            full = full_state_dict(self.model)
        finally:
            if backup is not None:
                EMA.restore(module, backup)
        if self.is_main:
            with tempfile.TemporaryDirectory(dir=self.out, prefix=".grid-") as tmp:
                with plain_state(self.model, full), self._writing():
                    self.model.save_pretrained(tmp)
                samples = grid_samples(self._plain_copy(Path(tmp)))
            with self._writing():
                samples.save(samples_path(path, samples.spec()))
        del full
        torch.distributed.barrier()

    def _plain_copy(self, folder: Path) -> Any:
        """The model ``save_pretrained`` wrote into ``folder``, loaded unsharded: a model
        folder as its class reads one; an adapter folder onto its base, read from the folder
        the base was loaded from (``genzoo.load`` records it)."""
        if adapter_of(self.model) is None:
            return type(self.model).from_pretrained(folder, device=self.dev)
        base_folder = self.model.loaded_from

        def base(name: str, **kw: Any) -> Any:
            model = type(self.model).from_pretrained(base_folder, device=self.dev)
            model.loaded_from = base_folder
            return model
        return load_adapter(folder, base)

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
