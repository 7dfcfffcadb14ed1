"""The server's bounded queue and its batching worker.

Requests become ``Job``s, checked (model loaded, options validated) before they are queued, so
a bad request is refused at once and the queue holds only work that can run. One worker
thread runs one ``generate`` call at a time (the CPU's cores go to the model, not to several
half-batches). Pending jobs for the same model and the same options are merged into one call
of up to ``max_batch`` samples: each job brings its own per-sample generators
(``sample_generators(seed, k, start)``), so the samples a job gets depend only on its own seed
and options, never on what it was batched with.

A job whose client went away, or whose time ran out, is dropped before its next batch. A
batch whose every job is cancelled is interrupted where it runs: ``Cancelled`` is raised in
the worker thread (``PyThreadState_SetAsyncExc``) at its next Python instruction, which for a
sampler is the next token or step, whatever the family (no model has to poll a flag). At
most one interrupt is sent per batch and any undelivered one is withdrawn as the batch ends,
so it can never land outside the batch it was meant for.
"""
from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from typing import Any

from genzoo.errors import GenzooError
from genzoo.samples import Samples
# the job types live in serve.jobs (shared with serve.stepping); re-exported here
from genzoo.serve.jobs import Cancelled, Job, QueueFull, ShuttingDown, plan_job  # noqa: F401

log = logging.getLogger("genzoo.serve.app")


class Batcher:
    """A bounded queue of jobs and the worker thread that merges and runs them."""

    def __init__(self, max_batch: int = 64, max_queue: int = 64, merge: bool = True):
        self.max_batch, self.max_queue, self.merge = max_batch, max_queue, merge
        self.pending: list[Job] = []
        self.cond = threading.Condition()
        self.running = True
        self.stats = {"jobs": 0, "batches": 0, "samples": 0, "merged_batches": 0,
                      "max_batch_seen": 0, "cancelled": 0, "timed_out": 0, "rejected": 0,
                      "errors": 0, "interrupts": 0, "interrupts_outside_generate": 0}
        self.batch_seconds = 1.0  # running mean, for Retry-After
        self.current: list[Job] | None = None  # the jobs of the batch running now
        self.interrupted = False  # whether this batch was sent its one interrupt
        self.thread = threading.Thread(target=self._work, name="genzoo-batcher", daemon=True)
        self.thread.start()
        # continuous batching: jobs of models that step (supports_stepping) decode together
        # in a scheduler per model (genzoo.serve.stepping); --exact (no merge) keeps them here
        from genzoo.serve.stepping import Stepping
        self.stepping = Stepping(max_batch, max_queue)

    def submit(self, job: Job) -> None:
        """Queue ``job``, or raise ``QueueFull`` (the server answers 503 with Retry-After)."""
        if self.merge and self.stepping.accepts(job):
            self.stepping.submit(job)  # its own bound; refused there too once shut down
            return
        with self.cond:
            if not self.running:
                raise ShuttingDown("the server is shutting down; retry after it restarts")
            if len(self.pending) >= self.max_queue:
                self.stats["rejected"] += 1
                wait = max(1, math.ceil(self.batch_seconds * (1 + len(self.pending) /
                                                               max(1, self.max_batch))))
                raise QueueFull(f"the server is busy ({len(self.pending)} requests queued); "
                                f"retry in {wait} s", wait)
            self.pending.append(job)
            self.stats["jobs"] += 1
            self.cond.notify()

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        """Drop ``job`` (its client went away, or its time ran out) before its next batch, and
        stop the running batch at once if no job in it is wanted any more."""
        with self.cond:
            if not job.cancelled and job.future is not None and not job.future.done():
                self.stats["timed_out" if reason == "timed_out" else "cancelled"] += 1
            job.cancelled = True
            if job in self.pending:
                self.pending.remove(job)
            if self.current and job in self.current and all(j.cancelled for j in self.current):
                self._interrupt()

    def stop(self, wait: float = 5.0) -> None:
        """Stop the worker (``close``) and wait at most ``wait`` seconds for its thread (a
        daemon: it never holds the process up)."""
        self.close()
        self.thread.join(timeout=wait)
        self.stepping.stop(wait)

    def close(self) -> None:
        """Refuse further work without waiting: queued and running jobs fail at once with
        ``ShuttingDown`` (their clients get 503 now rather than a cut connection later), the
        running batch is interrupted, and the worker exits."""
        with self.cond:
            self.running = False
            dropped = self.pending + (self.current or [])
            self.pending = []
            for job in dropped:
                job.cancelled = True
                job.finish(error=ShuttingDown("the server is shutting down; retry on another "
                                              "replica or after it restarts"))
            if self.current:
                self._interrupt()
            self.cond.notify_all()
        self.stepping.close()

    def _interrupt(self) -> None:
        """Raise ``Cancelled`` in the worker at its next instruction (once per batch; the
        caller holds ``cond`` and has checked that a batch is running)."""
        if self.interrupted or self.thread.ident is None:
            return
        self.interrupted = True
        self.stats["interrupts"] += 1
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                   ctypes.py_object(Cancelled))

    def _leave_batch(self) -> None:
        """The batch is over: no interrupt may target it any more; withdraw one not yet
        delivered (SetAsyncExc with NULL clears the thread's pending exception)."""
        with self.cond:
            self.current = None
            if self.interrupted and self.thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                           None)
            self.interrupted = False

    def snapshot(self) -> dict[str, Any]:
        """Counters and queue length (for /healthz and the tests)."""
        from genzoo.serve.stepping import merged
        with self.cond:
            own = {**self.stats, "queued": len(self.pending), "max_queue": self.max_queue,
                   "max_batch": self.max_batch, "merge": self.merge}
        return merged(own, self.stepping.snapshot())  # the schedulers' jobs counted in

    # ---- the worker ----------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[Job, int, int]] | None:
        """The next generate call as (job, start, count) chunks: the oldest job's next chunk,
        plus chunks of later jobs with the same key while the batch has room."""
        with self.cond:
            while self.running and not self.pending:
                self.cond.wait()
            if not self.running:
                return None
            now = time.monotonic()
            for job in [j for j in self.pending if j.deadline < now]:
                self.pending.remove(job)
                job.cancelled = True
                self.stats["timed_out"] += 1
            if not self.pending:
                return []
            head = self.pending[0]
            room = min(self.max_batch, head.batch_size) if self.merge else head.batch_size
            chunks: list[tuple[Job, int, int]] = []
            for job in self.pending:
                if room <= 0:
                    break
                if job is not head and (not self.merge or job.key is None or
                                        job.key != head.key):
                    continue
                k = min(job.n - job.done, room, job.batch_size)
                chunks.append((job, job.done, k))
                room -= k
            # running from now on, in the same breath as chosen: a cancel that comes before
            # generate starts still interrupts it (the interrupt then lands in _work)
            self.current, self.interrupted = [job for job, _, _ in chunks], False
            return chunks

    def _work(self) -> None:
        while True:
            try:
                chunks = self._next_batch()
                if chunks is None:
                    return
                if chunks:
                    self._run(chunks)
            except Cancelled:
                # an interrupt delivered just before or after its batch ran: every job of
                # that batch was cancelled already, nobody waits for it
                self._leave_batch()
                with self.cond:
                    self.stats["interrupts_outside_generate"] += 1

    def _run(self, chunks: list[tuple[Job, int, int]]) -> None:
        """One generate call for ``chunks``; each job gets its rows, finished jobs their
        result. An error fails every job of the batch (and only them)."""
        t0 = time.perf_counter()
        jobs = [job for job, _, _ in chunks]
        try:
            outputs = run_chunks(chunks)
            self._leave_batch()
        except BaseException as e:  # noqa: BLE001 - any failure goes to the waiting clients
            self._leave_batch()  # (again, if the interrupt landed in the first one)
            self._fail(jobs, e)
            return
        seconds = time.perf_counter() - t0
        total = sum(k for _, _, k in chunks)
        with self.cond:
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * seconds
            self.stats["batches"] += 1
            self.stats["samples"] += total
            self.stats["merged_batches"] += len(chunks) > 1
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], total)
            for (job, _, k), part in zip(chunks, outputs):
                job.parts.append(part)
                job.done += k
                if job.done >= job.n:
                    if job in self.pending:
                        self.pending.remove(job)
                    job.finish(_joined(job))

    def _fail(self, jobs: list[Job], error: BaseException) -> None:
        with self.cond:
            for job in jobs:
                if job in self.pending:
                    self.pending.remove(job)
                if isinstance(error, Cancelled):
                    if not job.cancelled:  # a job of the batch still wanted (cannot be)
                        job.finish(error=ShuttingDown("the request was cancelled"))
                    continue
                if not isinstance(error, GenzooError):
                    self.stats["errors"] += 1
                    log.error("generate failed for %s", job.model_name, exc_info=error)
                job.finish(error=error)


def run_chunks(chunks: list[tuple[Job, int, int]]) -> list[Samples]:
    """Call the model's ``generate`` once on every chunk's generators, concatenated, under
    ``inference_mode`` and the model's autocast; return each chunk's rows as ``Samples``."""
    import torch
    from genzoo.batching import batch_rows
    from genzoo.seeding import sample_generators
    head = chunks[0][0]
    model = head.model
    generators = []
    for job, start, k in chunks:
        generators += sample_generators(job.seed, k, start=start)
    opts = dict(head.opts)
    if len(chunks) == 1:  # per-sample values never merge: slice this job's rows
        _, start, k = chunks[0]
        opts.update({name: batch_rows(v, start, k) for name, v in head.per_sample.items()})
    with torch.inference_mode(), model.autocast():
        out = model.generate(generators, **opts)
    parts, offset = [], 0
    for job, start, k in chunks:
        # _batch: the model's own NaN check and clamp, with this job's own sample indices
        parts.append(model.to_samples(out[offset:offset + k], {**job.meta, "start": start},
                                      start))
        offset += k
    return parts


def _joined(job: Job) -> Samples:
    """A finished job's parts as one ``Samples`` with its provenance, plus what the model
    recorded per batch (``to_samples``' own meta keys, e.g. usage figures): lists joined in
    sample order, anything else as the first batch has it."""
    meta = dict(job.meta)
    for key in job.parts[0].meta.keys() - job.meta.keys() - {"start"}:
        values = [p.meta.get(key) for p in job.parts]
        meta[key] = [x for v in values for x in v] if all(isinstance(v, list) for v in values) \
            else values[0]
    first = job.parts[0]
    return Samples(first.spec().concat([p.data for p in job.parts]), first.modality, meta)
