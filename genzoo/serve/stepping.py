"""Continuous batching: a scheduler thread per model that offers step-by-step sampling.

A model whose class sets ``supports_stepping`` (see ``GenerativeModel.start_sequence``) has
its jobs run here instead of the ``Batcher``: each sample of a job is a *sequence* that joins
the model's running batch between two steps (its prefill runs then), advances with every
other live sequence in one batched ``step_sequences`` call, streams its new output after each
step, and leaves the batch the moment it ends, its client goes away or its deadline passes.
At most ``max_batch`` sequences are live per model (memory stays bounded); the rest wait in
order. Sample i of a job draws from ``sample_generators(seed, 1, start=i)``, the generator
``genzoo sample`` gives it, so what a request gets never depends on its companions.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from genzoo.errors import GenzooError
from genzoo.serve.jobs import Cancelled, Job, QueueFull, ShuttingDown

log = logging.getLogger("genzoo.serve.app")

#: A model's scheduler thread ends after this many idle seconds (and lets go of the model,
#: so the pool can unload it); the next job starts a fresh one.
IDLE_SECONDS = 30.0


def can_step(job: Job) -> bool:
    """Whether ``job`` runs here: its model offers stepping (``supports_stepping``) and no
    option varies per sample (those are sliced per batch by the ``Batcher``)."""
    return bool(getattr(job.model, "supports_stepping", False)) and not job.per_sample


@dataclass
class _Entry:
    """A job in a scheduler: the states of its started samples, in sample order."""

    job: Job
    opts: dict[str, Any]
    stream: Any
    states: list[Any] = field(default_factory=list)

    @property
    def started_all(self) -> bool:
        return len(self.states) >= self.job.n

    @property
    def finished(self) -> bool:
        return self.started_all and all(s.done for s in self.states)


class ModelStepper:
    """The scheduler of one model: a waiting list, the live entries and the thread."""

    def __init__(self, model: Any, owner: "Stepping"):
        self.model, self.owner = model, owner
        self.waiting: list[_Entry] = []  # jobs with samples not started yet, oldest first
        self.entries: list[_Entry] = []  # every job here (started or not), oldest first
        self.thread = threading.Thread(target=self._work, daemon=True,
                                       name=f"genzoo-stepper-{getattr(model, 'arch', '')}")

    def live(self) -> list[Any]:
        """The states of started sequences that have not ended."""
        return [s for e in self.entries for s in e.states if not s.done]

    # ---- the thread ------------------------------------------------------------------------
    def _work(self) -> None:
        import torch
        idle_since = time.monotonic()
        while True:
            with self.owner.cond:
                self._retire_cancelled()
                if not self.owner.running:
                    self._drop_all()
                    self.owner.forget(self)
                    return
                if not self.entries:
                    if time.monotonic() - idle_since > self.owner.idle_seconds:
                        self.owner.forget(self)
                        return
                    self.owner.cond.wait(timeout=1.0)
                    continue
            with torch.inference_mode(), self.model.autocast():
                self._admit()
                self._step()
            self._deliver()
            idle_since = time.monotonic()

    def _admit(self) -> None:
        """Start waiting samples (prefill + first unit) while the batch has room."""
        while True:
            with self.owner.cond:
                room = self.owner.max_batch - len(self.live())
                entry = self.waiting[0] if self.waiting and room > 0 else None
            if entry is None:
                return
            from genzoo.seeding import sample_generators
            i = len(entry.states)
            try:
                state = self.model.start_sequence(
                    sample_generators(entry.job.seed, 1, start=i)[0], **entry.opts)
            except BaseException as e:  # noqa: BLE001 - the job's client gets the error
                self._fail([entry], e)
                continue
            with self.owner.cond:
                entry.states.append(state)
                self.owner.stats["sequences"] += 1
                if entry.started_all and entry in self.waiting:
                    self.waiting.remove(entry)
            self._deliver_one(entry)  # its first token goes out now, not after the others' prefills

    def _step(self) -> None:
        states = self.live()
        if not states:
            return
        try:
            self.model.step_sequences(states)
        except BaseException as e:  # noqa: BLE001 - cannot tell whose row failed: all fail
            self._fail([e_ for e_ in self.entries if any(s in states for s in e_.states)], e)
            return
        with self.owner.cond:
            self.owner.stats["steps"] += 1
            self.owner.stats["max_batch_seen"] = max(self.owner.stats["max_batch_seen"],
                                                     len(states))

    def _deliver(self) -> None:
        """Stream new pieces; hand finished jobs their samples."""
        for entry in list(self.entries):
            self._deliver_one(entry)

    def _deliver_one(self, entry: _Entry) -> None:
        job = entry.job
        if entry.stream is not None and entry.states:
            piece = entry.states[0].take_piece()
            try:
                if piece:
                    entry.stream(piece)
            except Cancelled:
                self.owner.cancel(job)
                return
            except BaseException as e:  # noqa: BLE001 - the job's client gets the error
                self._fail([entry], e)
                return
        if entry.finished and not job.cancelled:
            try:
                samples = self.model.collect_sequences(entry.states, dict(job.meta))
            except BaseException as e:  # noqa: BLE001
                self._fail([entry], e)
                return
            with self.owner.cond:
                self._remove(entry)
                self.owner.stats["samples"] += job.n
            job.finish(samples)

    # ---- bookkeeping (called with the lock held unless said otherwise) --------------------
    def _remove(self, entry: _Entry) -> None:
        live = [s for s in entry.states if not s.done]
        for s in live:
            s.stop()  # its cache goes at once
        if live:  # running work stopped early (cancelled, out of time, shutting down)
            self.owner.stats["interrupts"] += 1
        if entry in self.entries:
            self.entries.remove(entry)
        if entry in self.waiting:
            self.waiting.remove(entry)

    def _retire_cancelled(self) -> None:
        now = time.monotonic()
        for entry in list(self.entries):
            if not entry.job.cancelled and entry.job.deadline < now:
                entry.job.cancelled = True
                self.owner.stats["timed_out"] += 1
            if entry.job.cancelled:
                self._remove(entry)

    def _drop_all(self) -> None:
        for entry in list(self.entries):
            self._remove(entry)
            entry.job.cancelled = True
            entry.job.finish(error=ShuttingDown("the server is shutting down; retry on another "
                                                "replica or after it restarts"))

    def _fail(self, entries: list[_Entry], error: BaseException) -> None:
        """Fail these jobs (only them); called without the lock."""
        with self.owner.cond:
            for entry in entries:
                self._remove(entry)
                if isinstance(error, Cancelled):
                    continue
                if not isinstance(error, GenzooError):
                    self.owner.stats["errors"] += 1
                    log.error("sampling failed for %s", entry.job.model_name, exc_info=error)
                entry.job.finish(error=error)


class Stepping:
    """Every model's scheduler, one shared bound on waiting jobs, and their counters."""

    def __init__(self, max_batch: int = 64, max_queue: int = 64,
                 idle_seconds: float = IDLE_SECONDS):
        self.max_batch, self.max_queue, self.idle_seconds = max_batch, max_queue, idle_seconds
        self.cond = threading.Condition()
        self.running = True
        self.steppers: dict[int, ModelStepper] = {}
        self.stats = {"jobs": 0, "sequences": 0, "steps": 0, "samples": 0, "max_batch_seen": 0,
                      "cancelled": 0, "timed_out": 0, "rejected": 0, "errors": 0,
                      "interrupts": 0}

    accepts = staticmethod(can_step)

    def submit(self, job: Job) -> None:
        """Queue ``job`` on its model's scheduler (started if need be), or raise ``QueueFull``
        when ``max_queue`` jobs already wait for a place in the batch."""
        with self.cond:
            if not self.running:
                raise ShuttingDown("the server is shutting down; retry on another replica or "
                                   "after it restarts")
            waiting = sum(len(s.waiting) for s in self.steppers.values())
            if waiting >= self.max_queue:
                self.stats["rejected"] += 1
                raise QueueFull(f"the server is busy ({waiting} requests queued); retry in "
                                f"{max(1, math.ceil(waiting / self.max_batch))} s",
                                max(1, math.ceil(waiting / self.max_batch)))
            stepper = self.steppers.get(id(job.model))
            if stepper is None or not stepper.thread.is_alive() and stepper.thread.ident:
                stepper = self.steppers[id(job.model)] = ModelStepper(job.model, self)
                stepper.thread.start()
            opts = {k: v for k, v in job.opts.items() if k != "stream"}
            entry = _Entry(job, opts, job.opts.get("stream") if job.n == 1 else None)
            stepper.entries.append(entry)
            stepper.waiting.append(entry)
            self.stats["jobs"] += 1
            self.cond.notify_all()

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        """Drop ``job``: its sequences leave the batch before the next step."""
        with self.cond:
            if not job.cancelled and not job.future.done():
                self.stats["timed_out" if reason == "timed_out" else "cancelled"] += 1
            job.cancelled = True
            self.cond.notify_all()

    def forget(self, stepper: ModelStepper) -> None:
        """An idle scheduler ends (lock held): the model is no longer referenced here."""
        if self.steppers.get(id(stepper.model)) is stepper:
            del self.steppers[id(stepper.model)]

    def close(self) -> None:
        """Refuse further work without waiting: every job here fails at once with
        ``ShuttingDown`` (503 for its client now) and each scheduler ends after its step."""
        with self.cond:
            self.running = False
            for stepper in self.steppers.values():
                for entry in stepper.entries:  # the states stay: their thread frees them
                    entry.job.cancelled = True
                    entry.job.finish(error=ShuttingDown("the server is shutting down; retry "
                                                        "on another replica or after it "
                                                        "restarts"))
            self.cond.notify_all()

    def stop(self, wait: float = 5.0) -> None:
        """``close``, then wait at most ``wait`` seconds for each scheduler thread."""
        self.close()
        with self.cond:
            threads = [s.thread for s in self.steppers.values()]
        for t in threads:
            t.join(timeout=wait)

    def snapshot(self) -> dict[str, Any]:
        """Counters, waiting jobs and live sequences (for /healthz and the tests)."""
        with self.cond:
            return {**self.stats, "models": len(self.steppers),
                    "queued": sum(len(s.waiting) for s in self.steppers.values()),
                    "live": sum(len(s.live()) for s in self.steppers.values())}


#: The counters a queue view shares with the schedulers' (summed; the largest batch is a max).
SHARED = ("jobs", "samples", "cancelled", "timed_out", "rejected", "errors", "interrupts",
          "queued")


def merged(queue: dict[str, Any], stepping: dict[str, Any]) -> dict[str, Any]:
    """The ``Batcher``'s snapshot with the schedulers' work counted in: shared counters
    summed (so /healthz counts every job once, whichever way it ran), ``max_batch_seen`` the
    larger, and the schedulers' own view under ``stepping``."""
    out = {**queue, **{k: queue.get(k, 0) + stepping.get(k, 0) for k in SHARED}}
    out["max_batch_seen"] = max(queue.get("max_batch_seen", 0), stepping["max_batch_seen"])
    out["stepping"] = stepping
    return out
