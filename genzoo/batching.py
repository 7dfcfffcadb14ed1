"""What ``GenerativeModel.sample`` does around a family's ``generate``: per-sample options
sliced batch by batch, the provenance a sample records, the progress bar (which the finetune
engine shares), and the sharding of a call over the ranks of a process group.

Sharding keeps one process's batches — ``[0, B)``, ``[B, 2B)`` ... with the same batch size,
so their arithmetic and bytes are one process's — and deals them round-robin: batch b belongs
to rank ``b % world``. Work goes in rounds: in round k every rank makes its batch
``k * world + rank`` (if any), then the round's batches (or the error a rank met) are
exchanged, so memory holds one round at a time and a failing rank stops every rank at once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from genzoo import errors
from genzoo.devices import all_gather_bytes, distributed_world, gather_bytes, gather_ints
from genzoo.errors import OptionError, SampleError
from genzoo.options import Option
from genzoo.samples import Samples

#: What ``sample(distributed=...)`` does inside an initialised process group of world > 1:
#: ``all`` every rank gets every sample; ``main`` rank 0 gets them, the others nothing;
#: ``local`` each rank gets its own batches; ``off`` no sharding (this process alone).
DISTRIBUTED_MODES: tuple[str, ...] = ("all", "main", "local", "off")


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


# ---- sharding over a process group ----------------------------------------------------------
def check_distributed(mode: Any) -> str:
    """``mode`` when it is one of ``DISTRIBUTED_MODES``, else a one-line OptionError."""
    if not isinstance(mode, str) or mode not in DISTRIBUTED_MODES:
        raise OptionError(f"distributed must be one of {', '.join(DISTRIBUTED_MODES)}, "
                          f"got {mode!r}")
    return mode


def sharding(mode: str) -> tuple[int, int]:
    """``(rank, world)`` that a call in ``mode`` shards over: ``(0, 1)`` (this process
    alone) for ``off`` or outside an initialised process group."""
    return (0, 1) if mode == "off" else distributed_world()


def shard_rounds(make: Callable[[int], Samples], starts: list[int], mode: str,
                 bar: Progress) -> Iterator[Samples]:
    """The batches beginning at ``starts`` (``make(start)`` makes one), dealt round-robin
    over the ranks and exchanged round by round as ``mode`` says (see the module's doc).
    ``bar`` counts every rank's samples as each round ends."""
    rank, world = distributed_world()
    for first in range(0, len(starts), world):
        todo = starts[first:first + world]
        batch, payload, error, failure = _make_own(make, todo[rank] if rank < len(todo) else None,
                                                   send=mode != "local")
        rows = gather_ints([len(error), len(payload), len(batch) if batch is not None else 0])
        if any(row[0] for row in rows):
            raise _rank_error(gather_bytes(error, [row[0] for row in rows]) or [], world) \
                from failure
        bar.update(sum(row[2] for row in rows))
        if mode == "local":
            if batch is not None:
                yield batch
            continue
        got = gather_bytes(payload, [row[1] for row in rows], None if mode == "all" else 0)
        for data in (got or [])[:len(todo)]:
            yield Samples.from_bytes(data)


def _make_own(make: Callable[[int], Samples], start: int | None,
              send: bool) -> tuple[Samples | None, bytes, bytes, Exception | None]:
    """This rank's share of a round: its batch, the batch's bytes (when they are sent), and
    either nothing or the error it met as a JSON record (the exception kept for chaining)."""
    if start is None:
        return None, b"", b"", None
    try:
        batch = make(start)
        return batch, batch.to_bytes() if send else b"", b"", None
    except Exception as e:  # noqa: BLE001 - every rank must hear of it, then all raise
        return None, b"", _error_record(e), e


def _error_record(e: Exception) -> bytes:
    """``e`` as JSON another rank can raise again: a genzoo error keeps its class and line,
    anything else becomes a SampleError's line naming its type."""
    name = type(e).__name__
    own = isinstance(e, errors.GenzooError) and getattr(errors, name, None) is type(e)
    text = str(e).splitlines()[0] if str(e) else ""
    record = {"error": name if own else "SampleError",
              "message": text if own else f"{name}: {text}".rstrip(": ")}
    return json.dumps(record).encode("utf-8")


def _from_record(data: bytes, prefix: str = "") -> errors.GenzooError:
    """The error an ``_error_record`` describes, its line after ``prefix``."""
    record = json.loads(data.decode("utf-8"))
    cls = getattr(errors, record["error"], SampleError)
    if not (isinstance(cls, type) and issubclass(cls, errors.GenzooError)):
        cls = SampleError
    return cls(prefix + record["message"])


def _rank_error(records: list[bytes], world: int) -> errors.GenzooError:
    """The one error every rank raises: the first failing rank's, naming it."""
    rank, data = next((r, d) for r, d in enumerate(records) if d)
    return _from_record(data, f"sampling failed on rank {rank} of {world}: ")


def raise_together(error: Exception | None) -> None:
    """Inside a process group, let every rank learn whether one met ``error`` (a step only
    some ranks run, such as rank 0 opening the output): then each raises it — the failing
    rank its own, the others the same class and line — so none waits for a rank that left.
    Outside a group (or with no error anywhere) a failing rank raises its own; else nothing."""
    if distributed_world()[1] > 1:
        records = all_gather_bytes(_error_record(error) if error is not None else b"")
        if error is None and any(records):
            raise _from_record(next(d for d in records if d))
    if error is not None:
        raise error


def gather_rows(parts: list[tuple[int, dict[str, torch.Tensor]]],
                shard: bool = True) -> dict[str, torch.Tensor]:
    """Per-batch tensors — ``(start, {name: rows})`` for each batch this rank made — of every
    rank (``shard`` and inside a process group; else this rank's alone), joined in sample
    order on every rank: what ``local`` sampling's per-batch features become. The tensors
    travel as safetensors bytes."""
    if shard and distributed_world()[1] > 1:
        from safetensors.torch import load, save
        mine = save({f"{start}:{name}": t.detach().to("cpu").contiguous()
                     for start, rows in parts for name, t in rows.items()})
        parts = []
        for data in all_gather_bytes(mine):
            grouped: dict[int, dict[str, torch.Tensor]] = {}
            for key, t in load(data).items():
                start, name = key.split(":", 1)
                grouped.setdefault(int(start), {})[name] = t
            parts += grouped.items()
    if not parts:
        return {}
    parts = sorted(parts, key=lambda p: p[0])
    return {name: torch.cat([rows[name] for _, rows in parts]) for name in parts[0][1]}
