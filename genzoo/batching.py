"""What ``GenerativeModel.sample`` does around a family's ``generate``: per-sample options
sliced batch by batch, the provenance a sample records, and the progress bar (which the
finetune engine shares)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from genzoo.errors import OptionError
from genzoo.options import Option


@dataclass
class SamplingPlan:
    """What ``GenerativeModel.plan_sampling`` checked once for a call: the options (defaults
    filled in, per-sample values still whole), the batch size, the per-sample values to slice,
    the options' provenance and the ``meta`` every batch records."""

    n: int
    seed: int
    opts: dict[str, Any]
    batch_size: int
    per_sample: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def per_sample_values(schema: dict[str, Option], opts: dict[str, Any],
                      n: int) -> dict[str, Any]:
    """The per-sample options given one value per sample (a list, or images stacked along
    dim 0) or one for all of them; a count that is neither 1 nor ``n`` is an OptionError."""
    out = {}
    for name, value in opts.items():
        option = schema.get(name)
        if option is None or not option.per_sample or value is None:
            continue
        if option.type == "image" or isinstance(value, list):
            count = len(value)
            if count not in (1, n):
                raise OptionError(f"option {name!r} has {count} values for {n} samples; give one "
                                  f"per sample or one for all")
            out[name] = value
    return out


def batch_rows(value: Any, start: int, k: int) -> Any:
    """Rows ``start .. start+k`` of a per-sample value (one value repeated when it is for all)."""
    if len(value) == 1:
        return value.expand(k, *value.shape[1:]) if isinstance(value, torch.Tensor) else value * k
    return value[start:start + k]


def provenance(schema: dict[str, Option], opts: dict[str, Any]) -> dict[str, Any]:
    """Sampling options as a sample's provenance records them: plain values as they are,
    images as the sha256 of their float32 bytes, API-only callables left out."""
    out: dict[str, Any] = {}
    for name, value in opts.items():
        option = schema.get(name)
        if option is not None and option.type == "callable":
            continue
        if isinstance(value, torch.Tensor):
            data = value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
            out[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()
        elif _json_value(value):
            out[name] = value
    return out


def _json_value(v: Any) -> bool:
    """True for option values worth recording as provenance (not callbacks or tensors)."""
    return v is None or isinstance(v, (str, int, float, bool)) or (
        isinstance(v, (list, tuple)) and all(_json_value(x) for x in v))


class Progress:
    """Progress over ``total`` units (samples, steps): a tqdm bar on stderr, a user's callback
    (called with the count done so far), or nothing. ``update(k)`` after k more, ``set_postfix``
    for figures beside the bar (a loss), ``close()`` at the end."""

    def __init__(self, progress: bool | Callable[[int], None], total: int, desc: str,
                 unit: str = "sample", initial: int = 0, leave: bool = False):
        self.done = initial
        self.callback = progress if callable(progress) else None
        self.bar: Any = None
        if progress and self.callback is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                            dynamic_ncols=True)

    def update(self, k: int) -> None:
        """Count ``k`` more units done."""
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.callback is not None and k:
            self.callback(self.done)

    def set_postfix(self, values: dict[str, Any]) -> None:
        """Show ``values`` beside the bar (a terminal bar only)."""
        if self.bar is not None:
            self.bar.set_postfix(values)

    def close(self) -> None:
        """End the bar (a no-op for a callback or nothing)."""
        if self.bar is not None:
            self.bar.close()


def progress_bar(progress: bool | Callable[[int], None], total: int, desc: str,
                 unit: str = "sample", initial: int = 0, leave: bool = False) -> Progress:
    """The one progress display of sampling and training (see ``Progress``)."""
    return Progress(progress, total, desc, unit, initial, leave)
