"""How ``genzoo.evaluate`` draws and measures: ``SampleRun`` (samples measured batch by
batch as they are made, sharded under torchrun), the reference statistics shared by the
ranks, the reference samples given as a required condition, ``label_accuracy``, and the
family's own figures (``evaluate_metrics``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from genzoo.errors import OptionError
from genzoo.eval.reference import ReferenceSet

if TYPE_CHECKING:
    from genzoo.model import GenerativeModel


@dataclass(frozen=True)
class SampleRun:
    """How an evaluation draws samples: the measured ones and, for ``label_accuracy``, as
    many again with labels share the count, seed, batch size and sampling options."""

    n: int
    seed: int = 0
    batch_size: int | None = None
    progress: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def draw(self, model: GenerativeModel, **extra: Any):
        """``model``'s ``n`` samples of this run (``extra``: more sampling options); inside a
        process group every rank gets all of them, each rank having made its share."""
        return model.sample(self.n, seed=self.seed, batch_size=self.batch_size,
                            progress=self.progress, **self.options, **extra)

    def features(self, model: GenerativeModel, net: Any,
                 **extra: Any) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Features and class probabilities (None when ``net`` does not classify) of this
        run's samples, and the seconds spent sampling. ``net`` measures each batch as it is
        made — inside a process group by the rank that made it — given the metadata its
        modality names (``sample_rate``) when it takes ``meta``; the rows are joined in
        sample order on every rank, so the figures equal one process's (same batches, same
        arithmetic)."""
        from genzoo.batching import gather_rows
        from genzoo.eval.features import measure
        keys = tuple(model.sample_modality().metadata)
        parts: list[tuple[int, dict[str, torch.Tensor]]] = []
        seconds, t0 = 0.0, time.perf_counter()
        for batch in model.iter_samples(self.n, seed=self.seed, batch_size=self.batch_size,
                                        progress=self.progress, distributed="local",
                                        **self.options, **extra):
            seconds += time.perf_counter() - t0
            feats, probs = measure(net, batch.data, {k: batch.meta.get(k) for k in keys})
            rows = {"feats": feats} if probs is None else {"feats": feats, "probs": probs}
            parts.append((int(batch.meta["start"]), rows))
            t0 = time.perf_counter()
        seconds += time.perf_counter() - t0
        joined = gather_rows(parts)
        return joined["feats"], joined.get("probs"), seconds


def shared_reference_stats(reference: ReferenceSet, net: Any) -> Any:
    """The reference statistics (``refstats.reference_stats``), inside a process group made
    by rank 0 first (or read from its cache) while the others wait, then read from the cache
    by them: the work is done once and every rank measures against the same numbers (a rank
    whose cache is elsewhere, on another node, computes the same ones itself). Rank 0's
    failure is every rank's."""
    from genzoo.batching import raise_together, sharding
    from genzoo.eval.refstats import reference_stats

    def stats_now():
        return reference_stats(reference.data, reference.source, net, meta=reference.meta)
    rank, world = sharding("all")
    if world == 1:
        return stats_now()
    stats, failure = None, None
    if rank == 0:
        try:
            stats = stats_now()
        except Exception as e:  # noqa: BLE001 - shared with the other ranks, then raised
            failure = e
    raise_together(failure)  # also the barrier: rank 0's cache file is written now
    return stats if stats is not None else stats_now()


def given_reference(model: GenerativeModel, run: SampleRun,
                     reference: ReferenceSet) -> SampleRun:
    """``run`` for a model that samples only given conditions (``required_conditions``):
    each required image condition not set by the caller gets the first n reference images,
    so the samples measured are the model's outputs for them (an autoencoder's
    reconstructions); n is capped at the reference set's size. A required condition of
    another type, unset, is refused: evaluation has no values for it."""
    required = [name for name in getattr(model, "required_conditions", ())
                if name not in run.options]
    if not required:
        return run
    schema = model.options()
    other = [name for name in required if name not in schema or schema[name].type != "image"]
    if other:
        raise OptionError(f"{model.name_or_path or model.arch} samples only given "
                          f"{', '.join(other)}; pass them as sampling options to evaluate it")
    n = min(run.n, len(reference.data))
    given = {name: reference.data[:n] for name in required}
    return replace(run, n=n, options={**run.options, **given})


def label_accuracy(model: GenerativeModel, run: SampleRun, net: Any,
                    probs: torch.Tensor | None) -> dict[str, float]:
    """``label_accuracy`` of ``run.n`` more samples asked for labels 0..K-1 in turn, when the
    model's ``label`` option and the feature net's classes are the same K classes; else
    nothing (and nothing drawn)."""
    label = model.options().get("label")
    if label is None or probs is None or label.max is None or \
            int(label.max) + 1 != probs.shape[1]:
        return {}
    wanted = [i % probs.shape[1] for i in range(run.n)]
    _, got, _ = run.features(model, net, label=wanted)
    return {"label_accuracy": float((got.argmax(1).cpu() == torch.tensor(wanted)).double().mean())}


def family_metrics(model: GenerativeModel, reference: Any, seed: int,
                    labels: torch.Tensor | None = None) -> dict[str, Any]:
    """The family's own figures (``evaluate_metrics``), checked to be named numbers. The
    reference labels go only to a family whose method takes ``labels`` (added later to the
    extension point: families written before it keep working unchanged)."""
    from genzoo.eval.features import takes_keyword
    extra_args = {"labels": labels} if takes_keyword(model.evaluate_metrics, "labels") else {}
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)  # for a family that draws from torch's global generator
        extra = model.evaluate_metrics(reference, seed=seed, **extra_args)
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise OptionError(f"{model.arch}.evaluate_metrics must return a dict of named numbers, "
                          f"got {type(extra).__name__}")
    return {k: float(v) if hasattr(v, "item") and not isinstance(v, (int, float)) else v
            for k, v in extra.items()}


__all__ = ["SampleRun", "shared_reference_stats", "given_reference", "label_accuracy",
           "family_metrics"]
