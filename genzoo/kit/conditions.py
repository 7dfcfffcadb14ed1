"""The kit's check of declared conditions (labels, init/mask images, interpolation): each
keeps per-sample seeds. Imported only when a conformance test runs."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from genzoo.kit.conformance import _assert_same, _first
from genzoo.kit.learning import required_values, sample_shape
from genzoo.model import GenerativeModel


def check_conditions(model: GenerativeModel) -> None:
    """Every declared condition works and keeps per-sample seeds: a per-sample value list
    (labels) or image stack gives sample i what it gives alone; ``interpolate`` starts at
    sample 0 of the seed and ends at sample 0 of the target seed. A model with
    ``required_conditions`` gets the kit's values for them, two for ``interpolate``, which
    must go from the first (at the seed) to the second (at the target seed)."""
    schema = model.options()
    conditions = {name: opt for name, opt in schema.items() if opt.condition}
    if not conditions and "interpolate" not in model.capabilities:
        pytest.skip("the model declares no conditions and cannot interpolate")
    for name, opt in conditions.items():
        values = _condition_values(model, opt)
        if values is None:
            continue
        extra = {"init": values} if name == "mask" and "init" in schema else {}
        three = model.sample(3, seed=5, batch_size=2,
                             **{**required_values(model, 3), name: values, **extra})
        one = model.sample(1, seed=5, **{**required_values(model, 1), name: values[:1],
                                         **{k: v[:1] for k, v in extra.items()}})
        _assert_same(one, _first(three, 1), 1e-5, f"with condition {name!r}: sample 0 of 3 "
                     "differs from sample 0 alone (slice per-sample values by index)")
        assert name in model.capabilities, f"condition {name!r} is missing from capabilities"
    if "interpolate" in model.capabilities:
        given = required_values(model, 2)
        first, second = ({k: v[i:i + 1] for k, v in given.items()} for i in (0, 1))
        frames = model.interpolate(5, 6, 3, **given)
        assert len(frames) == 3, f"interpolate(5, 6, 3) gave {len(frames)} frames"
        _assert_same(_first(frames, 1), model.sample(1, seed=5, **first), 1e-5,
                     "between interpolate's first frame and sample 0 of its seed")
        last = type(frames)(frames.data[2:], frames.modality, frames.meta)
        _assert_same(last, model.sample(1, seed=6, **second), 1e-5,
                     "between interpolate's last frame and sample 0 of the target seed")


def _condition_values(model: GenerativeModel, opt) -> Any:
    """Three distinct values of a per-sample condition (None for kinds the kit cannot make)."""
    if opt.type == "image":
        g = torch.Generator().manual_seed(3)
        return torch.rand(3, *sample_shape(model), generator=g)
    if opt.type == "int" and opt.per_sample:
        lo = int(opt.min or 0)
        hi = int(opt.max) if opt.max is not None else lo + 2
        return [lo + i % (hi - lo + 1) for i in range(3)]
    return None
