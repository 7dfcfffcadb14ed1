"""The conformance kit's training checks: one short finetune per model, then what it must show.

A single :func:`run_finetune` per checked class feeds every check here (the kit keeps it in a
class-scoped fixture), so the stricter checks cost no extra training:

- the loss of each named stage falls, and the saved folder loads (:func:`check_loss_lowered`);
- ``generate``'s raw output stays in its modality's range after training and after reloading the trained
  folder (:func:`check_trained_output`): a fresh model can sit in range by luck of its init;
- the trained model survives save/load exactly (:func:`check_trained_round_trip`): a
  parameter that load resets to its init is invisible on a fresh model;
- every parameter that the stages name has moved (:func:`check_staged_parameters_trained`),
  and so has every other trainable one (:func:`check_every_parameter_trained`);
- the loss responds to the data (:func:`check_loss_uses_data`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genzoo.kit.conformance import _generate, check_raw_range, check_save_load, forbid_pickle
from genzoo.kit.learning import has_labels
from genzoo.model import GenerativeModel

#: The RNG seeds each stage loss is averaged over (the same ones for every comparison, so that
#: the losses compared see the same noise).
LOSS_SEEDS = (0, 1, 2)


@dataclass
class FinetuneRun:
    """What one short ``genzoo.engine.train.finetune`` run left behind, for the checks to inspect."""

    model: GenerativeModel
    initial: dict[str, torch.Tensor]  # every parameter before training (copies)
    batch: Any  # the fixed batch the losses are measured on
    names: list[str]  # the stages whose loss must fall
    before: dict[str, float]
    after: dict[str, float]
    steps: int
    result: Any = None  # the FinetuneResult
    notes: dict[str, Any] = field(default_factory=dict)


def stage_losses(model: GenerativeModel, batch, names, seeds=LOSS_SEEDS) -> dict[str, float]:
    """Each stage's loss on ``batch``, averaged over fixed RNG seeds (so that the losses
    before and after training, or on two batches, see the same noise)."""
    stages = model.train_stages()
    out = {}
    model.train()
    with torch.no_grad():
        for name in names:
            vals = []
            for s in seeds:
                torch.manual_seed(s)
                vals.append(float(stages[name].loss(batch)))
            out[name] = sum(vals) / len(vals)
    model.eval()
    return out


def run_finetune(model: GenerativeModel, data, out: Path, steps: int = 30,
                 options: dict | None = None, stages: list[str] | None = None) -> FinetuneRun:
    """Finetune ``model`` (in place, on the CPU) for ``steps`` with the one engine, recording
    the stage losses on a fixed batch before and after. Asserts only what it needs to run."""
    from genzoo.engine.train import finetune
    options = dict(options or {})
    dataset = model.prepare_data(data)
    assert len(dataset) > 0, "prepare_data returned an empty dataset"
    bs = int(options.pop("batch_size", 0) or min(16, len(dataset)))
    batch = dataset[torch.arange(min(bs, len(dataset)))]
    names = list(stages or model.train_stages())
    missing = set(names) - set(model.train_stages())
    assert not missing, f"finetune_stages names unknown stages {sorted(missing)}"
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    before = stage_losses(model, batch, names)
    for name, value in before.items():
        assert math.isfinite(value), f"the {name} loss is {value} before training"
    result = finetune(model, data, steps=steps, out=out, batch_size=bs, progress=False,
                      log_every=steps, device="cpu", **options)
    after = stage_losses(model, batch, names)
    return FinetuneRun(model, initial, batch, names, before, after, steps, result,
                       notes={"labelled": has_labels(dataset)})


def check_loss_lowered(run: FinetuneRun) -> None:
    """The finetune lowered every named stage's loss, saved a folder, and it loads."""
    from genzoo.api import load
    worse = {n: (run.before[n], run.after[n]) for n in run.names if not run.after[n] < run.before[n]}
    assert not worse, "finetune did not lower the loss (before, after): " + ", ".join(
        f"{n} {b:.4g} -> {a:.4g}" for n, (b, a) in worse.items())
    folder = run.result.folder
    assert folder is not None and Path(folder).is_dir(), "finetune saved no folder"
    reloaded = load(str(folder), device="cpu")
    assert type(reloaded) is type(run.model), "the finetuned folder loads as another class"


def check_trained_output(run: FinetuneRun, monkeypatch) -> None:
    """After training, and after reloading the trained folder, ``generate``'s raw output is
    finite and in its modality's ``value_range`` (``sample`` clamps, which would hide it)."""
    from genzoo.api import load
    spec = run.model.sample_modality()
    check_raw_range(_generate(run.model, 16), f"after {run.steps} finetune steps", spec)
    with monkeypatch.context() as mp:
        forbid_pickle(mp)
        reloaded = load(str(run.result.folder), device="cpu", dtype="fp32")
    check_raw_range(_generate(reloaded, 16), "after reloading the finetuned folder", spec)


def check_trained_round_trip(run: FinetuneRun, folder: Path, monkeypatch) -> None:
    """The trained model (its weights far from their init) saves and loads back exactly: a
    parameter that save skips or load re-initialises shows here, not on a fresh model."""
    check_save_load(run.model, folder, monkeypatch, when=f"after {run.steps} finetune steps")


def check_staged_parameters_trained(run: FinetuneRun) -> None:
    """Every parameter that a stage names (``TrainStage.params``) changed during finetuning:
    a parameter named but never updated means a detached path or a stage that trains only
    part of the model."""
    by_id = {id(p): n for n, p in run.model.named_parameters()}
    stuck = []
    for stage, st in run.model.train_stages().items():
        for p in st.params:
            name = by_id.get(id(p))
            assert name is not None, f"stage {stage!r} names a tensor that is not a parameter " \
                                     "of the model (build stages from self.parameters())"
            if torch.equal(p.detach(), run.initial[name]):
                stuck.append(f"{stage}:{name}")
    assert not stuck, (
        f"{len(stuck)} parameter(s) named by train_stages() did not change in {run.steps} "
        f"finetune steps: {', '.join(stuck[:6])}{' ...' if len(stuck) > 6 else ''}; does the "
        "loss reach them (no .detach(), no torch.no_grad), or should the stage leave them out?")


def check_every_parameter_trained(run: FinetuneRun, frozen: tuple[str, ...] = ()) -> None:
    """Every parameter that requires a gradient changed during finetuning, unless the
    family declares it frozen (``requires_grad=False``, or a name or ``fnmatch`` pattern in
    ``frozen``): a parameter left out of every ``train_stages()`` stage never trains."""
    from fnmatch import fnmatchcase
    staged = {id(p) for st in run.model.train_stages().values() for p in st.params}
    unstaged, stuck = [], []
    for name, p in run.model.named_parameters():
        if not p.requires_grad or any(fnmatchcase(name, pat) for pat in frozen):
            continue
        if torch.equal(p.detach(), run.initial[name]):
            (stuck if id(p) in staged else unstaged).append(name)
    assert not unstaged, (
        f"{len(unstaged)} trainable parameter(s) are in no train_stages() stage and did not "
        f"change in {run.steps} finetune steps: {_some(unstaged)}; stage them (the default "
        "stage takes every parameter), or declare them frozen: requires_grad=False, or the "
        "Conformance class's frozen_parameters")
    assert not stuck, (
        f"{len(stuck)} trainable parameter(s) did not change in {run.steps} finetune steps: "
        f"{_some(stuck)}; does the loss reach them (no .detach(), no torch.no_grad), or "
        "declare them frozen: requires_grad=False, or the Conformance class's frozen_parameters")


def _some(names: list[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (" ..." if len(names) > k else "")


def check_loss_uses_data(run: FinetuneRun) -> None:
    """Each named stage's loss on the real batch differs from its loss on another batch of
    the same shape (floats replaced by uniform noise, integers shuffled) at the same seeds."""
    other = other_batch(run.batch, torch.Generator().manual_seed(99))
    real = stage_losses(run.model, run.batch, run.names)
    fake = stage_losses(run.model, other, run.names)
    deaf = [n for n in run.names if abs(real[n] - fake[n]) <= 1e-6 * max(1.0, abs(real[n]))]
    assert not deaf, (
        "the loss does not respond to the data: " + ", ".join(
            f"{n} {real[n]:.6g} on the batch, {fake[n]:.6g} on noise" for n in deaf)
        + "; training_loss/train_stages must compute the loss from the batch it is given")


def other_batch(batch, g: torch.Generator):
    """A batch of the same structure and shapes with different content: float tensors become
    uniform noise in [0, 1], integer tensors (tokens, labels) are shuffled, bools flipped."""
    if isinstance(batch, torch.Tensor):
        if batch.is_floating_point():
            return torch.rand(batch.shape, generator=g, dtype=batch.dtype).to(batch.device)
        if batch.dtype == torch.bool:
            return ~batch
        flat = batch.flatten()  # shuffled values stay valid ids for the model's tables
        return flat[torch.randperm(flat.numel(), generator=g).to(flat.device)].reshape(batch.shape)
    if isinstance(batch, (list, tuple)):
        return type(batch)(other_batch(b, g) for b in batch)
    if isinstance(batch, dict):
        return {k: other_batch(v, g) for k, v in batch.items()}
    return batch
