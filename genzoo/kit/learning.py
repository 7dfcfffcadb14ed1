"""The kit's check that training moves samples toward the data, in its range and sense.

A model can lower its loss, keep its output in [0, 1] and still draw samples that are not
what it learned: 1.5x too bright (and clamped), inverted, rescaled. So the kit trains a fresh
model on a fixed probe dataset that any family learns in a few dozen steps (one smooth
diagonal gradient, from dark to mid-grey, with a small brightness jitter per image; labelled
where the model takes labels) and compares its samples with that data before and after:

- *closer*: the per-pixel mean of the samples is nearer the data's mean image after training
  than before (root mean square over pixels);
- *sense*: that mean image runs the data's way (correlation with the data's mean image at
  least ``MIN_CORRELATION``; an inverted model scores near -1, and is named as such);
- *range*: the samples' mean intensity is within ``MAX_MEAN_GAP`` of the data's (a 1.5x too
  bright model misses it by 0.2 or more).

The probe data is mid-grey on purpose: a scale or an inversion moves its mean well past the
tolerance, which sparse, mostly black data would hide. The probe is a 2-D field: it runs on
modalities whose layout has two trailing axes to draw it on (``probe_applies``: images); a
list of values (texts) or a signal (audio (n, channels, T), which a family may synthesise
from a few parameters that no ramp fits) skips it. Imported only when a conformance test
runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genzoo.model import GenerativeModel

#: Samples drawn before and after training (seed 0; sample i depends only on (0, i)).
PROBE_SAMPLES = 32
#: The probe data's darkest and brightest pixel (before the per-image jitter).
PROBE_LOW, PROBE_HIGH = 0.15, 0.7
#: The largest allowed gap between the samples' and the data's mean intensity.
MAX_MEAN_GAP = 0.1
#: The least allowed correlation between the samples' and the data's mean images.
MIN_CORRELATION = 0.3


@dataclass
class ProbeRun:
    """Samples of one model before and after a finetune on the probe data."""

    data: torch.Tensor  # the probe images (N, C, H, W)
    before: torch.Tensor  # samples of the fresh model
    after: torch.Tensor  # samples of the trained model
    steps: int


def sample_shape(model: GenerativeModel) -> tuple[int, ...]:
    """The shape of one of the model's samples (a tensor modality's, without n), which is
    also what its image-typed options take (init, mask): config ``image_shape``, else one
    sample's."""
    shape = model.config.get("image_shape")
    if shape:
        return tuple(int(s) for s in shape)
    return tuple(model.sample(1, seed=0).data.shape[1:])


def probe_applies(model: GenerativeModel) -> str | None:
    """Why the probe cannot run on ``model``'s modality (None when it can): it needs a
    tensor with a 2-D field, (n, C, H, W)."""
    spec = model.sample_modality()
    if spec.holds == "list" or len(spec.layout) < 4:
        return (f"{spec.plural} ({', '.join(spec.layout) or 'a list'}) have no 2-D field to "
                "compare with the probe's gradient")
    return None


def required_values(model: GenerativeModel, n: int,
                    images: torch.Tensor | None = None) -> dict[str, Any]:
    """The values the kit gives a model's ``required_conditions`` for ``n`` samples ({} for a
    model that samples from its prior): an image condition gets ``images`` cycled to n rows,
    or the kit's own images (image i drawn from seed 1000 + i, so the first k of n are the
    k); a per-sample int condition gets lo, lo + 1 ... in turn within its range."""
    out: dict[str, Any] = {}
    required = tuple(getattr(model, "required_conditions", ()))  # stand-ins may lack it
    schema = model.options() if required else {}
    for name in required:
        opt = schema.get(name)
        assert opt is not None, f"required condition {name!r} is not one of the model's options"
        if opt.type == "image":
            rows = [images[i % len(images)] for i in range(n)] if images is not None else \
                [torch.rand(sample_shape(model), generator=torch.Generator().manual_seed(1000 + i))
                 for i in range(n)]
            out[name] = torch.stack(rows)
        elif opt.type == "int" and opt.per_sample:
            lo = int(opt.min or 0)
            hi = int(opt.max) if opt.max is not None else lo + 2
            out[name] = [lo + i % (hi - lo + 1) for i in range(n)]
        else:
            raise AssertionError(f"the kit cannot make values for required condition {name!r} "
                                 f"({opt.type}); it makes images and per-sample ints")
    return out


def label_count(model: GenerativeModel) -> int:
    """How many classes the kit's data uses for a model that takes ``label`` (0: it does
    not): the declared range of the label option, at most 3."""
    opt = model.options().get("label")
    if opt is None or "label" not in model.capabilities:
        return 0
    lo = int(opt.min or 0)
    hi = int(opt.max) if opt.max is not None else lo + 2
    return max(1, min(3, hi - lo + 1))


def with_labels(model: GenerativeModel, images: torch.Tensor):
    """``images`` as the model's data: labelled (``genzoo.data.TensorImages`` with labels
    cycling through the first classes) where the model takes ``label``, else as they are."""
    classes = label_count(model)
    if not classes:
        return images
    from genzoo.data import TensorImages
    lo = int(model.options()["label"].min or 0)
    return TensorImages(images, torch.arange(len(images)) % classes + lo, source="kit")


def probe_images(model: GenerativeModel, n: int = 16) -> torch.Tensor:
    """``n`` images of the model's shape: one diagonal gradient from ``PROBE_LOW`` (top left)
    to ``PROBE_HIGH`` (bottom right), each image brighter or darker by up to 0.05."""
    c, h, w = sample_shape(model)
    ys = torch.linspace(0, 1, h).view(h, 1)
    xs = torch.linspace(0, 1, w).view(1, w)
    pattern = PROBE_LOW + (PROBE_HIGH - PROBE_LOW) * (ys + xs) / 2
    g = torch.Generator().manual_seed(5)
    jitter = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.1
    return (pattern.expand(n, c, h, w) + jitter).contiguous()


def run_probe(model: GenerativeModel, out: Path, steps: int = 100,
              options: dict[str, Any] | None = None) -> ProbeRun:
    """Sample ``model``, finetune it (in place, on the CPU) on the probe data for ``steps``,
    and sample it again (a model with ``required_conditions`` is given the probe images: its
    outputs for them must move toward them)."""
    from genzoo.engine.train import finetune
    images = probe_images(model)
    given = required_values(model, PROBE_SAMPLES, images)
    before = model.sample(PROBE_SAMPLES, seed=0, **given).data
    options = {"batch_size": len(images), **(options or {})}
    finetune(model, with_labels(model, images), steps=steps, out=out, progress=False,
             log_every=steps, device="cpu", **options)
    return ProbeRun(images, before, model.sample(PROBE_SAMPLES, seed=0, **given).data, steps)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    norm = float(a.norm() * b.norm())
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def check_moves_toward_data(run: ProbeRun) -> None:
    """After training on the probe data the samples are closer to it than before, run its
    way (positive correlation of the mean images) and match its mean intensity."""
    target = run.data.mean(0)
    before, after = run.before.mean(0), run.after.mean(0)
    gap = float(after.mean() - target.mean())
    corr = _correlation(after, target)
    far = (f"mean image {_rms(before, target):.3f} from the data's before, "
           f"{_rms(after, target):.3f} after")
    seen = (f"after {run.steps} steps on the kit's probe data (a gradient from "
            f"{PROBE_LOW} to {PROBE_HIGH}): samples' mean {float(after.mean()):.3f} against "
            f"the data's {float(target.mean()):.3f}, correlation {corr:+.2f}, {far}")
    assert corr > -0.5, (
        f"the samples run against the data {seen}; are they inverted (1 - x)? generate must "
        "return what training learned")
    assert _rms(after, target) < _rms(before, target), (
        f"training did not move the samples toward the data {seen}; does every part that "
        "generate uses train (train_stages), and does generate use what trained?")
    assert abs(gap) <= MAX_MEAN_GAP, (
        f"the samples are {'brighter' if gap > 0 else 'darker'} than the data {seen}; does "
        "generate rescale or shift its output (e.g. x * 1.5, 0.5 * x)? samples must keep the "
        "data's range")
    assert corr >= MIN_CORRELATION, (
        f"the samples do not follow the data's pattern {seen}; if the model learns slowly, "
        "raise the Conformance class's toward_data_steps (or finetune_options' lr)")


def has_labels(dataset: Any) -> bool | None:
    """Whether a prepared dataset carries at least one label (-1 is "no label"); None when
    it does not say (no ``labels`` attribute)."""
    if not hasattr(dataset, "labels"):
        return None
    labels = dataset.labels
    return labels is not None and bool((torch.as_tensor(labels) >= 0).any())


def label_hint(model: GenerativeModel, labelled: bool | None) -> str:
    """A clause naming the likely cause when a model that takes ``label`` trained on data
    without labels (its label paths never ran), else ''."""
    if labelled is not False or "label" not in model.capabilities:
        return ""
    return ("; note: this model takes `label` but the data it trained on has no labels, so "
            "whatever acts through labels never ran: give the Conformance class labelled "
            "data (data = a callable returning genzoo.data.TensorImages(images, labels))")
