"""The one finetune engine every family trains with.

A family supplies its loss (``training_loss`` or several ``train_stages``, e.g. a GAN's
discriminator then generator) and ``prepare_data``. The engine supplies the rest: devices,
AdamW with warm-up and cosine decay, gradient clipping and accumulation, bf16/fp16 autocast,
EMA weights, seeding, atomic checkpoints with exact resume, a NaN guard, progress, JSON-lines
metrics, periodic sample grids, DistributedDataParallel under ``torchrun``, and at the end a
``save_pretrained`` folder that ``genzoo.load`` and ``genzoo sample`` accept.

``finetune`` is the public function (``genzoo.finetune``); ``Trainer`` runs it in named phases
(prepare, resume, run_steps with checkpoint, finish). Its keywords are declared once, in
``genzoo.engine.options``. The engine sits above the model contract: it uses a model only
through its methods and imports nothing from ``genzoo.model`` at run time.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genzoo.engine.fsdp_trainer import FsdpTrainer
from genzoo.engine.options import FINETUNE_OPTIONS, STEPS, check_keywords
from genzoo.engine.parts import (EMA, FinetuneResult, claimed_run_folder, dist_env, lr_at,
                                 make_optimizer, output_error)
from genzoo.engine.lora import adapter_of
from genzoo.engine.trainer import Trainer
from genzoo.errors import OptionError

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel

# Kept importable for code written against 0.1 (plugins' tests use it).
_make_optimizer = make_optimizer


#: A loaded (pretrained) model finetunes at this fraction of its family's from-scratch learning
#: rate unless ``lr`` is given: measured on diffusion-mnist, 10 steps at the from-scratch rate
#: took FD (n=50) from 19 to 118 before any adaptation could help.
FINETUNE_LR_SCALE = 0.1

#: Engine-wide defaults; a family's ``train_defaults`` and the caller's keywords override them.
DEFAULTS: dict[str, Any] = dict(batch_size=64, lr=1e-3, warmup=100, weight_decay=0.0,
                                grad_clip=1.0, ema_decay=0.999, betas=(0.9, 0.99),
                                min_lr_ratio=0.1)

# The hyper-parameters a keyword left at None takes from train_defaults, then DEFAULTS.
_HYPER = ("batch_size", "lr", "warmup", "weight_decay", "grad_clip", "ema_decay")



def hyper_parameters(model: GenerativeModel, opts: FinetuneOptions) -> dict[str, Any]:
    """``DEFAULTS``, then the family's ``train_defaults``, then the caller's keywords.

    A loaded (pretrained) model's default lr is ``FINETUNE_LR_SCALE`` times the family's: a
    from-scratch rate wrecks good weights before it can adapt them. An explicit ``lr`` is
    used as given."""
    cfg = {**DEFAULTS, **model.train_defaults}
    # an adapter's base is frozen and its zero-initialised update needs the full rate
    if model.pretrained and adapter_of(model) is None:
        cfg["lr"] = cfg["lr"] * FINETUNE_LR_SCALE
    cfg.update({k: getattr(opts, k) for k in _HYPER if getattr(opts, k) is not None})
    return cfg


class FinetuneOptions:
    """Every keyword of ``finetune`` after ``steps`` and ``out``, checked, as attributes: the
    options ``genzoo.engine.options.FINETUNE_OPTIONS`` declares, each at its default unless
    given. None for a hyper-parameter means: the family's ``train_defaults``, else
    ``DEFAULTS`` (for a loaded model, ``lr`` is then scaled by ``FINETUNE_LR_SCALE``); ``lora``
    holds a ``genzoo.engine.lora.LoraSpec``."""

    def __init__(self, **options: Any) -> None:
        self.__dict__.update(check_keywords(options, stacklevel=4))

    if TYPE_CHECKING:  # the declared names are attributes; type checkers learn it here
        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def from_keywords(cls, options: dict[str, Any]) -> FinetuneOptions:
        """Build from ``finetune``'s keywords: ``precision`` is the deprecated name of
        ``dtype``; an unknown keyword or a bad value is a one-line OptionError."""
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        """The options by name, in their declared order."""
        return {name: self.__dict__[name] for name in FINETUNE_OPTIONS if name in self.__dict__}


def finetune(model: GenerativeModel, data: Any, *, steps: int,
             out: str | os.PathLike | None = None, **options: Any) -> FinetuneResult:
    """Train ``model`` on ``data`` for ``steps`` optimizer steps; see the module docstring.

    ``options`` are the keywords ``genzoo.engine.options.FINETUNE_OPTIONS`` declares
    (``batch_size``, ``lr``, ``dtype``, ``resume``, ...; ``precision`` is a deprecated alias of
    ``dtype``). ``out`` receives
    checkpoints/, metrics.jsonl, samples/ and, at the end, the model folder itself; a
    non-empty ``out`` that genzoo did not create is refused unless ``overwrite=True``, and
    one run at a time holds it (an OS lock).
    ``resume=True`` continues from ``out``'s last complete checkpoint with identical results to
    an uninterrupted run. ``stop_after=K`` checkpoints and stops at step K (a time-sliced run;
    resume it later). Returns a :class:`FinetuneResult`.
    """
    if steps is None:
        raise OptionError("steps is required: the number of optimizer steps (--steps)")
    STEPS.check(steps)
    opts = FinetuneOptions.from_keywords(options)
    if opts.resume and out is None:
        raise OptionError("--resume needs --out (the folder holding the checkpoints)")
    folder = Path(out) if out is not None else None
    # rank 0 alone owns the folder (the other ranks write nothing there)
    claim = (claimed_run_folder(folder, resume=opts.resume, overwrite=opts.overwrite)
             if folder is not None and dist_env()[0] == 0 else nullcontext())
    if opts.lora is not None:
        _attach_lora(model, opts)
    trainer = FsdpTrainer if opts.strategy == "fsdp" else Trainer
    cfg = hyper_parameters(model, opts)  # after the adapter: its rate is not scaled down
    try:
        with claim:
            return trainer(model, data, steps, folder, opts, cfg).run()
    except OSError as e:  # the folder itself cannot be made, locked or marked
        raise output_error(folder, e) from None


def _attach_lora(model: GenerativeModel, opts: FinetuneOptions) -> None:
    """Inject LoRA layers (peft's) before training; their random init is drawn from
    ``seed`` alone, so every rank and every rerun starts from the same adapter."""
    from genzoo.engine.lora import attach
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        attach(model, opts.lora)


__all__ = ["finetune", "Trainer", "FinetuneOptions", "FinetuneResult", "DEFAULTS",
           "FINETUNE_LR_SCALE", "EMA", "lr_at", "hyper_parameters", "FINETUNE_OPTIONS"]
